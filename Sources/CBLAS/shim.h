// OpenBLAS's CBLAS interface (cblas.h also declares openblas_get_* / openblas_set_*).
#include <cblas.h>
