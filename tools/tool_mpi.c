/* tool_mpi.c -- --transport mpi in kvr-run and kvr-profile: join the job (tool_util.h). */
#include "tool_util.h"

#include "kvr_comm.h"

#include <stdio.h>

int tool_mpi_join(const char *tool, int *argc, char ***argv, bool ranks_set, int32_t *ranks,
                  kvr_comm_world **world, kvr_comm **comm) {
    kvr_error err = {0};
    kvr_comm_params cp = kvr_comm_params_default();
    cp.transport = KVR_TRANSPORT_MPI;
    cp.n_ranks = 0;
    cp.argc = argc;
    cp.argv = argv;
    if (kvr_comm_world_create(&cp, world, &err) != KVR_OK) {
        fprintf(stderr, "%s: --transport mpi: %s\n", tool, err.msg);
        return 1;
    }
    *comm = kvr_comm_world_local(*world, 0);
    const int32_t size = kvr_comm_size(*comm);
    if (ranks_set && *ranks != size) {
        fprintf(stderr, "%s: --ranks %d but the MPI job has %d processes\n", tool, *ranks, size);
        kvr_comm_world_destroy(*world);
        *world = NULL;
        *comm = NULL;
        return 2;
    }
    *ranks = size;
    return 0;
}
