# The load tools of bench/ that need no Google Benchmark: hourglass_load, grpc_ceiling (the bare
# gRPC ceiling) and peer_load (the same workloads against Redis and beanstalkd). Included by
# bench/CMakeLists.txt and by tests/bench (which tests them in every build), once.
include_guard(GLOBAL)

set(hourglass_bench_dir ${CMAKE_CURRENT_LIST_DIR})

# hourglass_load: the load generator that drives a running server over gRPC (issue 6, item 2).
add_executable(hourglass_load ${hourglass_bench_dir}/load.cc)
target_link_libraries(hourglass_load PRIVATE hourglass::protos gRPC::grpc++ absl::flags
  absl::flags_parse absl::time absl::synchronization absl::strings)
hourglass_warnings(hourglass_load)

# grpc_ceiling: SchedulerService.Schedule/ScheduleBatch answered without storing.
add_executable(grpc_ceiling ${hourglass_bench_dir}/grpc_ceiling.cc)
target_link_libraries(grpc_ceiling PRIVATE hourglass::protos gRPC::grpc++ absl::synchronization absl::flags
  absl::flags_parse absl::time absl::strings)
hourglass_warnings(grpc_ceiling)

# peer_load: beanstalkd over its text protocol always; Redis through Debian's libhiredis-dev when
# it is installed (bench/compare.py installs it; the default build does not need it).
add_executable(peer_load ${hourglass_bench_dir}/peer_load.cc)
target_link_libraries(peer_load PRIVATE hourglass::protos gRPC::grpc++ absl::flags
  absl::flags_parse absl::time absl::synchronization absl::strings Threads::Threads)
hourglass_warnings(peer_load)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(HOURGLASS_HIREDIS QUIET IMPORTED_TARGET hiredis)
endif()
if(HOURGLASS_HIREDIS_FOUND)
  target_link_libraries(peer_load PRIVATE PkgConfig::HOURGLASS_HIREDIS)
  target_compile_definitions(peer_load PRIVATE HOURGLASS_HAVE_HIREDIS)
  set(HOURGLASS_PEER_LOAD_HAS_REDIS ON CACHE INTERNAL "peer_load speaks Redis (hiredis found)")
else()
  message(STATUS "bench: hiredis not found; peer_load is built without Redis")
  set(HOURGLASS_PEER_LOAD_HAS_REDIS OFF CACHE INTERNAL "peer_load speaks Redis (hiredis found)")
endif()
