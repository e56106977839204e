/* What the C tests share: a CHECK that counts, and `ok` that stops at the first failed call. */
#ifndef CONFCHAIN_TESTS_CHECK_H
#define CONFCHAIN_TESTS_CHECK_H

#include "confchain.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
static int passed = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failures++;                                          \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

/* Stops the test when a call that must succeed fails, with the library's message. */
static void ok(int32_t code, const char *what) {
  if (code != 0) {
    char msg[512];
    confchain_last_error((uint8_t *)msg, sizeof msg);
    fprintf(stderr, "FATAL %s: %d %s: %s\n", what, code, confchain_error_name(code), msg);
    exit(1);
  }
}

/* The closing line, and the exit code. */
static int report(void) {
  printf("%d passed, %d failed\n", passed, failures);
  return failures == 0 ? 0 : 1;
}

#endif
