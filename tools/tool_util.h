/* tool_util.h -- what the CLIs in tools/ share and no library needs: the usage-error message
 * (tool_util.c) and joining an MPI job for --transport mpi (tool_mpi.c, kvr_tool_mpi, for the
 * tools that link the runtime). Private to tools/; exit codes as the tools document them. */
#ifndef KVR_TOOL_UTIL_H
#define KVR_TOOL_UTIL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kvr_comm kvr_comm;
typedef struct kvr_comm_world kvr_comm_world;

/* Prints "TOOL: <message>\n(see TOOL --help)\n" on stderr and returns 2, the usage exit code. */
int tool_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of option flag as a whole number with an optional binary K/M/G suffix in [lo, hi]
 * (kvr_parse_size): 0, or "TOOL: FLAG: <why>" through tool_usage_error and 2. */
int tool_parse_size(const char *tool, const char *flag, const char *s, int64_t lo, int64_t hi,
                    int64_t *out);

/* --transport mpi: joins the MPI job (MPI_Init sees argc/argv) as *world, this process's rank as
 * *comm, and sets *ranks to the job's size. When ranks_set, *ranks must already equal it. Returns
 * 0, or after "TOOL: ..." on stderr the exit code: 1 when the job cannot be joined, 2 when --ranks
 * disagrees with the job (the world destroyed). */
int tool_mpi_join(const char *tool, int *argc, char ***argv, bool ranks_set, int32_t *ranks,
                  kvr_comm_world **world, kvr_comm **comm);

#endif
