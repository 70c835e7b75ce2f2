/* A stand-in for Windows' bcryptprimitives.dll, for Wine 8 (Debian 12),
 * which lacks it: Rust's std imports ProcessPrng from it for its random
 * numbers (HashMap keys), and Windows has had it since Windows 10. Wine 9
 * has its own, and tests/windows.rs installs this one only where the
 * prefix has none. Never shipped: it exists for the test's wine prefix.
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine 8 has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        length -= n;
    }
    return TRUE;
}
