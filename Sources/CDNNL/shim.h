// oneDNN's C API (v2: Debian's libdnnl-dev) for bf16 matrix products.
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

// libdnnl.so is built with the OpenMP runtime (GNU libgomp): its threads per parallel region
// follow the calling thread's OpenMP setting, so the module links libgomp to set it. Declared
// here rather than through <omp.h>, which lives in GCC's private include directory.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
