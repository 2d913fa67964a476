// OpenBLAS's CBLAS interface (cblas.h also declares openblas_get_* / openblas_set_*).
#include <cblas.h>

// LAPACK's Fortran interface, which Debian's OpenBLAS exports (column-major; every argument
// by pointer; a character argument's hidden length comes last, as gfortran passes it).
#include <stddef.h>
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
             int *iwork, int *info, size_t jobz_length);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda, const double *tau,
             double *work, const int *lwork, int *info);
