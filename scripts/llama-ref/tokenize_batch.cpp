// Tokenizes many strings with llama.cpp's vocabulary code in one process (llama-tokenize
// loads the vocabulary once per string). Input: one hex-encoded UTF-8 string per line on
// stdin. Output per line: the ids with BOS added and special tokens parsed, a tab, the ids
// with special-looking text treated as text (space-separated).
//   tokenize_batch MODEL.gguf < hex-lines > id-lines
#include "llama.h"
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

static std::string unhex(const std::string & h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back((char) std::stoi(h.substr(i, 2), nullptr, 16));
    }
    return out;
}

static void print_ids(const llama_vocab * vocab, const std::string & text, bool parse_special) {
    std::vector<llama_token> ids(text.size() + 8);
    int n = llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), (int) ids.size(),
                           true, parse_special);
    if (n < 0) {
        ids.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int) text.size(), ids.data(), (int) ids.size(),
                           true, parse_special);
    }
    for (int i = 0; i < n; i++) {
        printf(i ? " %d" : "%d", ids[i]);
    }
}

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf < hex-lines\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "failed to load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::string line;
    while (std::getline(std::cin, line)) {
        const std::string text = unhex(line);
        print_ids(vocab, text, true);
        printf("\t");
        print_ids(vocab, text, false);
        printf("\n");
    }
    llama_model_free(model);
    return 0;
}
