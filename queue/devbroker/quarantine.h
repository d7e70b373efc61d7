/* Freed-block quarantine of sluice-devbroker: its free() holds small blocks
 * back and hands them to glibc only when pushed out of a FIFO, so a block just
 * freed is not the next malloc's result (librdkafka's mock cluster names a
 * group member by its record's address; see quarantine.c). The oldest block
 * held goes back to glibc once QUARANTINE_SLOTS blocks or QUARANTINE_MAX_BYTES
 * usable bytes are held; blocks over QUARANTINE_MAX_BLOCK go back at once.
 * Linked into the devbroker only. Compiled out (QUARANTINE_ENABLED 0) under a
 * sanitizer that brings its own allocator. */
#ifndef SLUICE_QUARANTINE_H
#define SLUICE_QUARANTINE_H

/* Blocks with more usable bytes (malloc_usable_size) than this are not held. */
#define QUARANTINE_MAX_BLOCK 1024
/* Blocks held at most; a power of two. */
#define QUARANTINE_SLOTS 65536
/* Usable bytes held at most. */
#define QUARANTINE_MAX_BYTES (32u << 20)

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_HWADDRESS__)
#define QUARANTINE_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define QUARANTINE_ENABLED 0
#endif
#endif
#ifndef QUARANTINE_ENABLED
#define QUARANTINE_ENABLED 1
#endif

#endif
