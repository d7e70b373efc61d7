/* random: unpredictable bytes for ids (run ids, envelope ids), from the
 * kernel's generator (getrandom), drawn a pool at a time so that an id costs
 * no system call of its own.
 *
 * The pool is the process's: for the thread of its event loop only, and
 * never used again by both sides of a fork (sluice's children exec at once).
 */
#ifndef SLUICE_RANDOM_H
#define SLUICE_RANDOM_H

#include <stddef.h>

/* n bytes (at most the pool, 256) at out, each used once: 0, or -1 when the
 * kernel gave none (out is then untouched). */
int random_bytes(void *out, size_t n);

/* A name no other process shares, on this host or another (containers may
 * share a host name and a pid): "<prefix><host>:<pid>:<8 hex digits>". For
 * leases and consumer names. */
void random_process_name(char *out, size_t len, const char *prefix);

#endif
