/* tool_util.c -- the usage-error message every CLI prints and the option parsers they share
 * (tool_util.h). */
#include "tool_util.h"

#include "kvr_common.h"

#include <stdarg.h>
#include <stdio.h>

int tool_usage_error(const char *tool, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tool);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see %s --help)\n", tool);
    return 2;
}

int tool_parse_size(const char *tool, const char *flag, const char *s, int64_t lo, int64_t hi,
                    int64_t *out) {
    kvr_error e;
    if (kvr_parse_size(s, lo, hi, out, &e) != KVR_OK)
        return tool_usage_error(tool, "%s: %s", flag, e.msg);
    return 0;
}
