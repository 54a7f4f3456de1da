/* The one header bindgen reads (see build.rs, feature "bindgen"). */
#include "ggml.h"
#include "ggml-cpu.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
