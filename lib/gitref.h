/* gitref: whether a branch or tag name is one git would make.
 *
 * The rules of git check-ref-format for the part of a ref after refs/heads/
 * or refs/tags/, so that a name from a request or a payload is refused
 * where it arrives rather than met later by a run that cannot use it.
 */
#ifndef SLUICE_GITREF_H
#define SLUICE_GITREF_H

/* A file name's and a path's limits: git keeps a ref as a file under refs/,
 * each component of its name a directory or the file. */
#define GITREF_COMPONENT_MAX 255
#define GITREF_NAME_MAX	     4096

/* 1 when name is 1 to GITREF_NAME_MAX bytes and holds no control byte, space, DEL or any of
 * ~ ^ : ? * [ \, no "..", "@{" or trailing '.', is not "@", and each of its
 * '/'-separated components is 1 to GITREF_COMPONENT_MAX bytes, starts with
 * no '.' and ends in no ".lock"; 0 otherwise. */
int gitref_name_ok(const char *name);

#endif
