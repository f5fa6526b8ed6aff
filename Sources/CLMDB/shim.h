#ifndef BIFROST_CLMDB_SHIM_H
#define BIFROST_CLMDB_SHIM_H

// LMDB from the system (Debian: liblmdb-dev). Bifrost never vendors LMDB's source.
#include <lmdb.h>

#endif
