/*
 * program_init.c -- runs the program's own constructors from a shared
 * libdtask's role takeover (see spawn.c); apart from spawn.c
 * because <link.h> (elf.h) defines DT_ names of its own (DT_DEBUG).
 */
#include <link.h>
#include <stddef.h>
#include <stdint.h>

#include "spawn.h"


/* dt__run_program_constructors: when this code is in a shared library
 * (libdtask.so), its constructor runs before the program's own ones, so the
 * program's DT_TASK functions are not registered yet; the role never returns
 * to let them run, so run the program's DT_INIT and DT_INIT_ARRAY here, as
 * libc would have (the role ends with _exit: they never run twice).  In the
 * static library the takeover is one of the program's constructors and this
 * does nothing. */
static int first_object(struct dl_phdr_info *info, size_t size, void *out) {
  (void)size;
  *(struct dl_phdr_info *)out = *info;
  return 1; /* the first object listed is the program */
}
void dt__run_program_constructors(int argc, char **argv, char **envp) {
  struct dl_phdr_info prog;
  if (!dl_iterate_phdr(first_object, &prog)) return;
  uintptr_t self = (uintptr_t)&dt__run_program_constructors;
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < prog.dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &prog.dlpi_phdr[i];
    uintptr_t start = prog.dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && self >= start && self < start + ph->p_memsz) return; /* static */
    if (ph->p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)(prog.dlpi_addr + ph->p_vaddr);
  }
  if (!dyn) return;
  typedef void (*init_fn)(int, char **, char **);
  uintptr_t init = 0, array = 0;
  size_t array_size = 0;
  for (; dyn->d_tag != DT_NULL; dyn++) {
    if (dyn->d_tag == DT_INIT) init = prog.dlpi_addr + dyn->d_un.d_ptr;
    if (dyn->d_tag == DT_INIT_ARRAY) array = prog.dlpi_addr + dyn->d_un.d_ptr;
    if (dyn->d_tag == DT_INIT_ARRAYSZ) array_size = dyn->d_un.d_val;
  }
  if (init) ((init_fn)init)(argc, argv, envp);
  for (size_t i = 0; array && i < array_size / sizeof(init_fn); i++)
    ((init_fn *)array)[i](argc, argv, envp);
}

