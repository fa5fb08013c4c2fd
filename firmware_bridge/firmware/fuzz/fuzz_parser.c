/* Fuzz target for the streaming parser and the device core.
 *
 * libFuzzer:  make fuzz          (needs clang; runs build/fuzz_parser)
 * no clang:   make fuzz-standalone && build/fuzz_parser_standalone [N_RUNS] [SEED]
 *             (gcc + ASan/UBSan, random inputs through the same entry point)
 *
 * Properties: no crash or sanitizer report on any input; an intact frame that follows
 * arbitrary bytes and a 0x00 is always received; the core never enables the motors
 * while e-stopped or without a session.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_core.h"
#include "fb_protocol.h"

static void sink(void *ctx, const uint8_t *d, uint16_t n)
{
    (void)ctx;
    (void)d;
    (void)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_parser_t p;
    fb_msg_t m, hb;
    fb_core_t core;
    fb_config_t cfg;
    uint8_t buf[FB_MAX_WIRE];
    size_t i;
    int n, r = 0, k;

    fb_parser_init(&p);
    for (i = 0; i < size; i++)
        (void)fb_parser_feed(&p, data[i], &m);
    /* resync: delimiter + intact frame */
    memset(&hb, 0, sizeof hb);
    hb.version = FB_PROTOCOL_VERSION;
    hb.type = FB_HEARTBEAT;
    hb.seq = 4242;
    buf[0] = 0;
    n = fb_encode_frame(&hb, buf + 1, sizeof buf - 1) + 1;
    for (k = 0; k < n; k++)
        r = fb_parser_feed(&p, buf[k], &m);
    if (r != 1 || m.type != FB_HEARTBEAT || m.seq != 4242)
        abort();

    /* the same bytes through the device core, with time advancing per chunk */
    fb_config_defaults(&cfg);
    fb_core_init(&core, &cfg, 1, sink, NULL, 0xFFFFF000u);
    for (i = 0; i < size; i += 16) {
        size_t len = size - i < 16 ? size - i : 16;
        uint32_t t = 0xFFFFF000u + (uint32_t)i * 997u;
        fb_core_rx(&core, data + i, (uint16_t)len, t);
        fb_core_update(&core, t, (int32_t)i, -(int32_t)i);
        if ((core.estop_latched || !core.session) && core.motors_enabled)
            abort();
    }
    return 0;
}

#ifdef FB_FUZZ_STANDALONE
int main(int argc, char **argv)
{
    unsigned long runs = argc > 1 ? strtoul(argv[1], NULL, 0) : 20000;
    uint64_t s = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
    unsigned long i, total = 0;
    static uint8_t buf[4096];
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    for (i = 0; i < runs; i++) {
        size_t n, k;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        n = (size_t)(s >> 33) % sizeof buf;
        for (k = 0; k < n; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            /* bias towards zeros and small code bytes so frames get decoded deep */
            buf[k] = (s >> 60) < 3 ? 0 : (uint8_t)(s >> 40);
        }
        LLVMFuzzerTestOneInput(buf, n);
        total += n;
    }
    printf("fuzz_parser_standalone: %lu inputs, %lu bytes, no crash\n", runs, total);
    return 0;
}
#endif
