# kvr_bundle_targets.cmake -- the GPU bundle's one executable (scripts/gpu-bundle; included at the
# end of the top CMakeLists.txt when cmake/kvr_bundle.cmake set KVR_BUNDLE).
#
# Every program statically linked with OpenBLAS (and the CUDA kernels) is some 28 MB, so the
# bundle holds one multi-call binary, kvr-bundle: each program's own sources compiled again with
# main renamed (-Dmain=kvr_mc_<name>) and a dispatcher that runs the program named by argv[0]'s
# basename or, when called as kvr-bundle, by its first argument (bundle's `run` does
# `exec -a NAME kvr-bundle`). The programs keep their own compile definitions, include
# directories and libraries (read from their targets).
set(KVR_BUNDLE_PROGRAMS kvr-run kvr-profile kvr-db kvr-fit test_backend_ops test_transport
                        test_runtime test_cuda bench_gpu)
set(_decls "")
set(_table "")
set(_objs "")
set(_libs "")
foreach(prog ${KVR_BUNDLE_PROGRAMS})
  if(NOT TARGET ${prog})
    continue()
  endif()
  string(MAKE_C_IDENTIFIER "kvr_mc_${prog}" fn)
  get_target_property(srcs ${prog} SOURCES)
  get_target_property(dir ${prog} SOURCE_DIR)
  set(abs "")
  foreach(s ${srcs})
    if(IS_ABSOLUTE "${s}")
      list(APPEND abs "${s}")
    else()
      list(APPEND abs "${dir}/${s}")
    endif()
  endforeach()
  add_library(mc_${fn} OBJECT ${abs})
  target_compile_definitions(mc_${fn} PRIVATE main=${fn}
                             $<TARGET_PROPERTY:${prog},COMPILE_DEFINITIONS>)
  target_include_directories(mc_${fn} PRIVATE $<TARGET_PROPERTY:${prog},INCLUDE_DIRECTORIES>)
  target_compile_options(mc_${fn} PRIVATE $<TARGET_PROPERTY:${prog},COMPILE_OPTIONS>
                         -Wno-missing-prototypes)
  target_link_libraries(mc_${fn} PRIVATE $<TARGET_PROPERTY:${prog},LINK_LIBRARIES>)
  list(APPEND _objs $<TARGET_OBJECTS:mc_${fn}>)
  list(APPEND _libs $<TARGET_PROPERTY:${prog},LINK_LIBRARIES>)
  string(APPEND _decls "int ${fn}(int argc, char **argv);\n")
  string(APPEND _table "    {\"${prog}\", ${fn}},\n")
endforeach()
set(KVR_BUNDLE_DECLS "${_decls}")
set(KVR_BUNDLE_TABLE "${_table}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvr_bundle_main.c.in
               ${PROJECT_BINARY_DIR}/kvr_bundle_main.c @ONLY)
add_executable(kvr-bundle ${PROJECT_BINARY_DIR}/kvr_bundle_main.c ${_objs})
target_link_libraries(kvr-bundle PRIVATE ${_libs})
