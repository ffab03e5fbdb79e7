/* For the sanitizer run of the suite only.  PHP loads its extensions with
 * RTLD_DEEPBIND, which the AddressSanitizer runtime refuses; preloaded
 * before it, this passes every dlopen on without that flag. */
#define _GNU_SOURCE
#include <dlfcn.h>

void *dlopen(const char *file, int mode)
{
    static void *(*next)(const char *, int);

    if (!next) {
        next = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    }
    return next(file, mode & ~RTLD_DEEPBIND);
}
