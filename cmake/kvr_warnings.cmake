# C warning set (ggml's), applied to C sources only so nvcc never sees C-only flags.
set(KVR_C_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wpointer-arith -Wcast-qual -Werror=implicit-function-declaration -Werror=implicit-int)
foreach(w ${KVR_C_WARNINGS})
  add_compile_options($<$<COMPILE_LANGUAGE:C>:${w}>)
endforeach()
if(KVR_WERROR)
  add_compile_options($<$<COMPILE_LANGUAGE:C>:-Werror>)
endif()
