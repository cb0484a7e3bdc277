#!/usr/bin/env bash
# tests/cli/test_mpi_transport.sh TEST_TRANSPORT -- the transport test (tests/test_transport.c)
# over MPI: mpirun -np 3 test_transport --mpi runs every check on every process's rank. Skips
# (77) when mpirun is absent or kvr was built without MPI.
set -u
BIN="$1"
command -v mpirun >/dev/null || { echo "skipped: mpirun not found"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$BIN" --mpi-available || { echo "skipped: kvr was built without MPI"; exit 77; }
timeout 100 mpirun -np 3 "$BIN" --mpi
