# C warning set (ggml's), applied to C sources only so nvcc never sees C-only flags.
set(KVR_C_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wpointer-arith -Wcast-qual -Werror=implicit-function-declaration -Werror=implicit-int)
foreach(w ${KVR_C_WARNINGS})
  add_compile_options($<$<COMPILE_LANGUAGE:C>:${w}>)
endforeach()
if(KVR_WERROR)
  add_compile_options($<$<COMPILE_LANGUAGE:C>:-Werror>)
endif()

# CUDA (nvcc), applied per source by runtime/CMakeLists.txt: our kernels get every nvcc warning
# as an error (which makes ptxas' warnings errors too), the host compiler's -Wall -Wextra
# -Werror through -Xcompiler, and ptxas' register-spill and local-memory warnings -- so a spill
# in our kernels fails the build. Third-party device code (FlashInfer) gets the same reports
# without failing on them: its spills show in the build log (scripts/build prints them).
set(KVR_CUDA_FLAGS_REPORT -Xcompiler=-Wall,-Wextra -Xptxas=-warn-spills,-warn-lmem-usage)
set(KVR_CUDA_FLAGS ${KVR_CUDA_FLAGS_REPORT})
if(KVR_WERROR)
  list(APPEND KVR_CUDA_FLAGS -Werror=all-warnings -Xcompiler=-Werror)
endif()
