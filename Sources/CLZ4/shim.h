// LZ4 block and frame APIs.
#include <lz4.h>
#include <lz4frame.h>
