/* utf8.c -- UTF-8 validation for text that comes from files and ends up in JSON: every JSON
 * writer emits valid UTF-8 whatever bytes a model file, a CSV header or a cost file held. */
#include "kvr_common.h"

#include <string.h>

int kvr_utf8_seq_len(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    const unsigned c = p[0];
    if (c < 0x80) return c ? 1 : 0;
    int n;
    unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
    }
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0; /* also stops at the NUL */
    return n;
}

size_t kvr_utf8_sanitize(char *s) {
    size_t n_bad = 0;
    while (s && *s) {
        int n = kvr_utf8_seq_len(s);
        if (n == 0) {
            *s++ = '?';
            n_bad++;
        } else {
            s += n;
        }
    }
    return n_bad;
}

void kvr_json_write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const char *p = s ? s : ""; *p;) {
        const unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            const int n = kvr_utf8_seq_len(p);
            if (n == 0) {
                fputs("\\ufffd", f); /* not UTF-8: the replacement character */
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}
