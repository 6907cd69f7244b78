/*
 * msgpuck.c -- the out-of-line part of Debian's msgpuck (its tables and
 * non-inlined functions), compiled here as msgpuck.h asks ("define MP_SOURCE
 * 1 before #include <msgpuck.h> in a single compilation unit") rather than
 * linked from libmsgpuck.a, which Debian builds without -fPIC: this way the
 * library also links into shared objects (the Python extension).
 */
#define MP_SOURCE 1
#include <msgpuck.h>
