#ifndef DEFENDER_ALERTD_CDEFLATE_SHIM_H
#define DEFENDER_ALERTD_CDEFLATE_SHIM_H

// libdeflate: whole-buffer gzip, zlib and raw DEFLATE (Debian's libdeflate-dev).
#include <libdeflate.h>

#endif
