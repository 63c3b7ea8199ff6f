/*
 * fuzz_meta.c -- libFuzzer target: a cache file's metadata block.
 *
 * The block is read back from disk on every hit; a truncated or damaged
 * cache file must be refused, never read past. meta_decode() gets the
 * input as the first bytes of a file (at most one block).
 */
#define OFFLOAD_NO_MAIN 1
#include "../../offload_daemon.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct object_meta m, want;
    char *block;
    size_t n = size < OFFLOAD_META_SIZE ? size : OFFLOAD_META_SIZE;

    /* an exact-size heap copy, so ASan sees any read past the bytes */
    block = malloc(n ? n : 1);
    if (block == NULL)
        return 0;
    memcpy(block, data, n);
    if (meta_decode(block, n, &m) == 0) {
        if (strnlen(m.key, sizeof(m.key)) == sizeof(m.key) ||
            strnlen(m.etag, sizeof(m.etag)) == sizeof(m.etag) ||
            m.length < 0)
            abort();
        memset(&want, 0, sizeof(want));
        meta_matches(&m, "base.example/f", &want);
    }
    free(block);
    return 0;
}
