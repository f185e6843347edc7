// Default options of the sanitizer runtimes, linked into every executable of a
// HOURGLASS_SANITIZE build (tests/sanitizers/CMakeLists.txt), so that a test binary behaves the
// same whether CTest, sanitize.sh or a developer runs it. The *SAN_OPTIONS environment variables
// still override them (the runtimes parse the environment after these).
//
// Every report ends the process with a failure: UBSan is compiled with
// -fno-sanitize-recover=all and prints the stack; TSan stops at its first report
// (halt_on_error) and reads tests/sanitizers/tsan.supp, suppressions for reports that
// are proven to come from the uninstrumented Debian libraries alone.
extern "C" {

const char* __asan_default_options() {
  return "check_initialization_order=1:strict_init_order=1:detect_leaks="
         "1" HOURGLASS_SYMBOLIZER_OPTION;
}

const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1" HOURGLASS_SYMBOLIZER_OPTION;
}

const char* __tsan_default_options() {
  return "halt_on_error=1:second_deadlock_stack=1:suppressions=" HOURGLASS_TSAN_SUPPRESSIONS
      HOURGLASS_SYMBOLIZER_OPTION;
}

}  // extern "C"
