# FlashInfer's headers for the CUDA backend's attention (runtime/cuda/attn_flashinfer.cu).
# Pinned to 0.6.8: the newest whose headers build with the CCCL of CUDA 13.0 (0.6.18 and later
# need a newer one). Fetched once at configure time from PyPI (the wheel ships them under
# flashinfer/data/include) into the build tree -- never into the source tree, never committed.
# Offline: -DKVR_FLASHINFER_INCLUDE=/path/to/include (a folder holding flashinfer/), or
# -DKVR_FLASHINFER=OFF. When they cannot be had, configure says so and the backend builds
# without FlashInfer (its own tiled attention kernel only).
set(KVR_FLASHINFER_VERSION 0.6.8)
set(KVR_FLASHINFER_INCLUDE "" CACHE PATH "FlashInfer include folder (empty: fetch from PyPI)")
set(KVR_USE_FLASHINFER OFF)
set(KVR_FLASHINFER_STATUS "✗ (disabled: -DKVR_FLASHINFER=OFF)")
if(KVR_FLASHINFER)
  set(_fi_dir ${PROJECT_BINARY_DIR}/_deps/flashinfer-${KVR_FLASHINFER_VERSION})
  if(NOT KVR_FLASHINFER_INCLUDE AND NOT EXISTS ${_fi_dir}/include/flashinfer/attention/prefill.cuh)
    message(STATUS "FlashInfer ${KVR_FLASHINFER_VERSION}: fetching its headers from PyPI")
    find_package(Python3 COMPONENTS Interpreter QUIET)
    set(_fi_err "no python3")
    if(Python3_Interpreter_FOUND)
      execute_process(
        COMMAND ${Python3_EXECUTABLE} -m pip download flashinfer-python==${KVR_FLASHINFER_VERSION}
                --no-deps --disable-pip-version-check --timeout 20 --retries 1 -q
                -d ${_fi_dir}/wheel
        RESULT_VARIABLE _fi_rc OUTPUT_QUIET ERROR_VARIABLE _fi_err TIMEOUT 300)
      if(_fi_rc EQUAL 0)
        execute_process(
          COMMAND ${Python3_EXECUTABLE} -c
"import glob,os,sys,zipfile
d=sys.argv[1]; w=glob.glob(os.path.join(d,'wheel','flashinfer_python-*.whl'))[0]
z=zipfile.ZipFile(w); p='flashinfer/data/include/'
for n in z.namelist():
    if n.startswith(p) and not n.endswith('/'):
        o=os.path.join(d,'include',n[len(p):]); os.makedirs(os.path.dirname(o),exist_ok=True)
        open(o,'wb').write(z.read(n))"
                  ${_fi_dir}
          RESULT_VARIABLE _fi_rc ERROR_VARIABLE _fi_err)
      endif()
    endif()
    if(NOT EXISTS ${_fi_dir}/include/flashinfer/attention/prefill.cuh)
      string(STRIP "${_fi_err}" _fi_err)
      string(REGEX MATCH "[^\n]*$" _fi_err "${_fi_err}") # pip's last line says why
      message(STATUS "FlashInfer ${KVR_FLASHINFER_VERSION}: headers NOT available (${_fi_err}); "
                     "building the CUDA backend without it")
    endif()
  endif()
  if(KVR_FLASHINFER_INCLUDE)
    set(_fi_inc ${KVR_FLASHINFER_INCLUDE})
  else()
    set(_fi_inc ${_fi_dir}/include)
  endif()
  if(EXISTS ${_fi_inc}/flashinfer/attention/prefill.cuh)
    set(KVR_USE_FLASHINFER ON)
    set(KVR_FLASHINFER_INCLUDE_DIR ${_fi_inc})
    set(KVR_FLASHINFER_STATUS "✓ ${KVR_FLASHINFER_VERSION} (${_fi_inc})")
  else()
    set(KVR_FLASHINFER_STATUS "✗ headers absent: own attention kernel only")
  endif()
endif()
