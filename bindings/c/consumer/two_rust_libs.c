/* One program, two Rust static libraries: confchain's and another. Links and runs. */
#include <stdio.h>
#include "confchain.h"

int other_rust_value(void);

int main(void) {
  printf("confchain %s, other %d\n", confchain_version(), other_rust_value());
  return other_rust_value() > 0 ? 0 : 1;
}
