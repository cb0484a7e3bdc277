# kvr_bundle.cmake -- included right after project() by scripts/gpu-bundle
# (-DCMAKE_PROJECT_INCLUDE=...): link the host libraries statically, so the binaries run on a GPU
# machine that has a driver and Python wheels but no GSL, SQLite, OpenBLAS, PCRE2 or MPI.
#   - find_library prefers an archive over a shared library in each directory: GSL, SQLite,
#     OpenBLAS, PCRE2 and libgomp resolve to their .a; cJSON (no archive here) stays shared and
#     is carried beside the tools (lib/libcjson.so.1, found through the $ORIGIN rpath below);
#     cuBLAS and NCCL (no plain archives) stay shared and come from the GPU machine's wheels;
#   - OpenBLAS's LAPACK part needs libgfortran/libquadmath: their archives, linked after it;
#   - libm is the C library's (shared, like libc);
#   - libgcc and libstdc++ (the CUDA objects) are linked statically; CUDA's runtime is the
#     static cudart (CMake's default for CUDA and CUDA::cudart_static);
#   - the rpath is $ORIGIN/../lib alone (a RUNPATH: LD_LIBRARY_PATH, set by the bundle's runner,
#     still picks cuBLAS and NCCL), not the build machine's CUDA directories;
#   - KVR_BUNDLE makes the top CMakeLists.txt add the multi-call binary (kvr_bundle_targets.cmake).
set(CMAKE_FIND_LIBRARY_SUFFIXES .a .so)
set(KVR_LIBM m CACHE STRING "libm (bundle: the shared one)" FORCE)
set(pkgcfg_lib_GSL_m m CACHE STRING "libm for GSL (bundle: the shared one)" FORCE)
set(KVR_BUNDLE ON)
add_link_options(-static-libgcc -static-libstdc++)
set(CMAKE_BUILD_WITH_INSTALL_RPATH ON)
set(CMAKE_INSTALL_RPATH "\$ORIGIN/../lib")
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH OFF)
link_libraries("-Wl,--push-state,-Bstatic" gfortran quadmath "-Wl,--pop-state" dl m pthread rt)
