/* kvr_tokenize.c -- kvr-tokenize: encode text with a model's tokenizer (GGUF or HF directory) and print
 * the token ids (or, with --decode, the pieces). One output line per TEXT argument.
 *
 *   build/tools/kvr-tokenize --special "<|im_start|>user\nHi<|im_end|>"
 *   build/tools/kvr-tokenize --decode "Hello world"        ->  "Hello" " world"
 *   build/tools/kvr-tokenize --file prompt.txt
 *
 * Used by tests/ref/reference_llamacpp.py to compare against llama.cpp.
 */
#include "kvr_model.h"
#include "tool_util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef struct kvr_tokenize_opts {
    const char *model;
    const char *file;
    bool special;
    bool bos;
    bool decode;
} kvr_tokenize_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvr-tokenize [options] TEXT...\n"
            "  -m, --model PATH   GGUF file, or HF directory with tokenizer.json (default: the real\n"
            "                     SmolLM2-135M GGUF, see scripts/fetch-model)\n"
            "  -s, --special      parse special tokens (<|im_start|>) in the text (llama.cpp's\n"
            "                     parse_special)\n"
            "  -b, --bos          prepend the BOS token\n"
            "  -d, --decode       print each token's piece (a quoted, escaped string) instead of ids\n"
            "  -f, --file PATH    encode the bytes of PATH ('-' = stdin) as one more TEXT\n"
            "      --prompt-file PATH  the same (kvr-run's name for it)\n"
            "  -h, --help         this help\n"
            "Prints one line per TEXT: space-separated ids, or the pieces with --decode.\n");
}

#define usage_error(...) tool_usage_error("kvr-tokenize", __VA_ARGS__)

static bool utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t k = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* A piece as a double-quoted string: \" \\ \n \r \t, \xNN for other control bytes and for
 * bytes >= 0x80 when the piece is not valid UTF-8 on its own. */
static void print_piece(const char *p, size_t n) {
    bool raw_high = utf8_valid((const unsigned char *)p, n);
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !raw_high)) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
}

static int encode_one(const kvr_tokenizer *tok, const kvr_tokenize_opts *o, const char *text,
                      size_t len) {
    int32_t *ids = NULL;
    int64_t n = 0;
    kvr_error err;
    if (kvr_tokenizer_encode(tok, text, len, o->bos, o->special, &ids, &n, &err) != KVR_OK) {
        fprintf(stderr, "kvr-tokenize: %s\n", err.msg);
        return 1;
    }
    char small[256];
    for (int64_t i = 0; i < n; i++) {
        if (i) putchar(' ');
        if (!o->decode) {
            printf("%d", (int)ids[i]);
            continue;
        }
        int64_t k = kvr_tokenizer_decode_token(tok, ids[i], small, sizeof small);
        if (k < 0) {
            printf("<bad id %d>", (int)ids[i]);
        } else if ((size_t)k < sizeof small) {
            print_piece(small, (size_t)k);
        } else {
            char *big = malloc((size_t)k + 1);
            if (!big) {
                free(ids);
                fprintf(stderr, "kvr-tokenize: out of memory\n");
                return 1;
            }
            kvr_tokenizer_decode_token(tok, ids[i], big, (size_t)k + 1);
            print_piece(big, (size_t)k);
            free(big);
        }
    }
    putchar('\n');
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"special", no_argument, 0, 's'},
        {"bos", no_argument, 0, 'b'},         {"decode", no_argument, 0, 'd'},
        {"file", required_argument, 0, 'f'},  {"help", no_argument, 0, 'h'},
        {"prompt-file", required_argument, 0, 'f'},
        {0, 0, 0, 0}};
    kvr_tokenize_opts o = {0};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":m:sbdf:h", lo, NULL)) != -1) {
        switch (ch) {
            case 'm':
                if (!*optarg) return usage_error("--model: empty path");
                o.model = optarg;
                break;
            case 's': o.special = true; break;
            case 'b': o.bos = true; break;
            case 'd': o.decode = true; break;
            case 'f':
                if (!*optarg) return usage_error("--file: empty path");
                o.file = optarg;
                break;
            case 'h': usage(stdout); return 0;
            case ':': return usage_error("option needs a value: %s", argv[optind - 1]);
            default: return usage_error("unknown option: %s", argv[optind - 1]);
        }
    }
    if (optind >= argc && !o.file) return usage_error("give at least one TEXT or --file");

    kvr_error err;
    size_t file_len = 0;
    char *file_text = NULL;
    if (o.file && kvr_read_file(o.file, 0, &file_text, &file_len, &err) != KVR_OK) {
        /* before the model: a bad file fails fast, with the OS reason */
        fprintf(stderr, "kvr-tokenize: --file %s\n", err.msg);
        return 1;
    }
    char defpath[4096];
    if (!o.model) {
        if (kvr_model_default_path(defpath, sizeof defpath, &err) != KVR_OK) {
            fprintf(stderr, "kvr-tokenize: %s\n", err.msg);
            free(file_text);
            return 1;
        }
        o.model = defpath;
    }
    kvr_model_load_params lp = kvr_model_load_params_default();
    lp.load_tokenizer = true;
    kvr_model *model = NULL;
    if (kvr_model_load(o.model, &lp, &model, &err) != KVR_OK) {
        fprintf(stderr, "kvr-tokenize: --model %s: %s\n", o.model, err.msg);
        free(file_text);
        return 1;
    }
    const kvr_tokenizer *tok = kvr_model_get_tokenizer(model);
    if (!tok) {
        fprintf(stderr,
                "kvr-tokenize: --model %s has no supported tokenizer (a GGUF file needs "
                "tokenizer.ggml.* metadata, an HF directory a tokenizer.json; a warning above names "
                "what is not supported)\n",
                o.model);
        kvr_model_destroy(model);
        free(file_text);
        return 1;
    }
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++) rc = encode_one(tok, &o, argv[i], strlen(argv[i]));
    if (rc == 0 && o.file) rc = encode_one(tok, &o, file_text, file_len);
    free(file_text);
    kvr_model_destroy(model);
    return rc;
}
