/* The public header compiles on its own, as C11, with every warning on. */
#include "dtask.h"

int dt__header_compiles(void) { return DT_OK; }
