/* Unit tests of the C firmware core: shared test vectors, kinematics, the device logic.
 *
 *   test_fb [VECTORS]           run everything (VECTORS defaults to ../test_vectors.txt)
 *   test_fb --parse FILE        run FILE through the streaming parser and print one line
 *                               per intact frame ("<type> <seq>") and the error counts,
 *                               so tests can compare it with the Python parser.
 *   test_fb --fuzz-core N SEED  N random bytes and frames through the whole core
 */
#define _DEFAULT_SOURCE

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_core.h"
#include "fb_kinematics.h"
#include "fb_pi.h"
#include "fb_protocol.h"

static int g_checks, g_failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        g_checks++;                                                                       \
        if (!(cond)) {                                                                    \
            g_failures++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* --- test vectors ---------------------------------------------------------------------- */

enum kind { U8, U16, U32, F32 };
typedef struct {
    uint8_t type;
    const char *name;
    enum kind kind;
    size_t off;
} field_t;

#define F(t, n, k, m) { t, n, k, offsetof(fb_msg_t, u.m) }
static const field_t FIELDS[] = {
    F(FB_HELLO, "nonce", U32, hello.nonce),
    F(FB_HELLO_ACK, "nonce", U32, hello_ack.nonce),
    F(FB_HELLO_ACK, "fw_major", U8, hello_ack.fw_major),
    F(FB_HELLO_ACK, "fw_minor", U8, hello_ack.fw_minor),
    F(FB_HELLO_ACK, "fw_patch", U8, hello_ack.fw_patch),
    F(FB_HELLO_ACK, "capabilities", U8, hello_ack.capabilities),
    F(FB_HELLO_ACK, "device_id", U32, hello_ack.device_id),
    F(FB_VEL_CMD, "v", F32, vel_cmd.v),
    F(FB_VEL_CMD, "omega", F32, vel_cmd.omega),
    F(FB_VEL_CMD, "timeout_ms", U16, vel_cmd.timeout_ms),
    F(FB_ODOMETRY, "t_us", U32, odometry.t_us),
    F(FB_ODOMETRY, "x", F32, odometry.x),
    F(FB_ODOMETRY, "y", F32, odometry.y),
    F(FB_ODOMETRY, "theta", F32, odometry.theta),
    F(FB_ODOMETRY, "v", F32, odometry.v),
    F(FB_ODOMETRY, "omega", F32, odometry.omega),
    F(FB_ODOMETRY, "cmd_seq", U16, odometry.cmd_seq),
    F(FB_STATUS, "t_us", U32, status.t_us),
    F(FB_STATUS, "battery_mv", U16, status.battery_mv),
    F(FB_STATUS, "battery_pct", U8, status.battery_pct),
    F(FB_STATUS, "state", U8, status.state),
    F(FB_STATUS, "faults", U16, status.faults),
    F(FB_STATUS, "rx_errors", U16, status.rx_errors),
    F(FB_STATUS, "rx_lost", U16, status.rx_lost),
    F(FB_HEARTBEAT, "uptime_ms", U32, heartbeat.uptime_ms),
    F(FB_HEARTBEAT, "state", U8, heartbeat.state),
    F(FB_ACK, "ref_seq", U16, ack.ref_seq),
    F(FB_ACK, "ref_type", U8, ack.ref_type),
    F(FB_NACK, "ref_seq", U16, nack.ref_seq),
    F(FB_NACK, "ref_type", U8, nack.ref_type),
    F(FB_NACK, "reason", U8, nack.reason),
    F(FB_SET_PARAM, "param", U8, set_param.param),
    F(FB_SET_PARAM, "value", F32, set_param.value),
    F(FB_RESET_ODOM, "x", F32, reset_odom.x),
    F(FB_RESET_ODOM, "y", F32, reset_odom.y),
    F(FB_RESET_ODOM, "theta", F32, reset_odom.theta),
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS[0])

static const struct { const char *name; uint8_t type; } TYPES[] = {
    {"HELLO", FB_HELLO}, {"HELLO_ACK", FB_HELLO_ACK}, {"VEL_CMD", FB_VEL_CMD},
    {"ODOMETRY", FB_ODOMETRY}, {"STATUS", FB_STATUS}, {"HEARTBEAT", FB_HEARTBEAT},
    {"ESTOP", FB_ESTOP}, {"ESTOP_RELEASE", FB_ESTOP_RELEASE}, {"ACK", FB_ACK},
    {"NACK", FB_NACK}, {"SET_PARAM", FB_SET_PARAM}, {"RESET_ODOM", FB_RESET_ODOM},
};

#define MAX_TOKENS 16
typedef struct {
    int n;
    char *key[MAX_TOKENS], *val[MAX_TOKENS];
} line_t;

static const char *get(const line_t *l, const char *key)
{
    int i;
    for (i = 0; i < l->n; i++)
        if (!strcmp(l->key[i], key))
            return l->val[i];
    return NULL;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (s[0] && s[1] && n < cap) {
        unsigned b;
        sscanf(s, "%2x", &b);
        out[n++] = (uint8_t)b;
        s += 2;
    }
    return n;
}

static void set_field(fb_msg_t *m, const field_t *f, const char *v)
{
    uint8_t *p = (uint8_t *)m + f->off;
    switch (f->kind) {
    case U8: { uint8_t x = (uint8_t)strtoul(v, NULL, 0); memcpy(p, &x, 1); break; }
    case U16: { uint16_t x = (uint16_t)strtoul(v, NULL, 0); memcpy(p, &x, 2); break; }
    case U32: { uint32_t x = (uint32_t)strtoul(v, NULL, 0); memcpy(p, &x, 4); break; }
    case F32: { float x = strtof(v, NULL); memcpy(p, &x, 4); break; }
    }
}

static size_t field_size(enum kind k) { return k == U8 ? 1 : k == U16 ? 2 : 4; }

static void check_frame_vector(const line_t *l, const char *where)
{
    const char *tname = get(l, "type"), *wire_hex = get(l, "wire");
    uint8_t wire[512], enc[FB_MAX_WIRE];
    size_t wlen, i;
    fb_msg_t want, got;
    fb_parser_t p;
    int r = 0, nfields = 0, given = 0, k;
    memset(&want, 0, sizeof want);
    want.version = FB_PROTOCOL_VERSION;
    want.type = 0;
    for (i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(TYPES[i].name, tname))
            want.type = TYPES[i].type;
    CHECK(want.type != 0, "%s: unknown type %s", where, tname);
    want.seq = (uint16_t)strtoul(get(l, "seq"), NULL, 0);
    for (i = 0; i < NFIELDS; i++) {
        const char *v;
        if (FIELDS[i].type != want.type)
            continue;
        nfields++;
        v = get(l, FIELDS[i].name);
        CHECK(v != NULL, "%s: field %s missing", where, FIELDS[i].name);
        if (v) {
            set_field(&want, &FIELDS[i], v);
            given++;
        }
    }
    /* every key except name/type/seq/wire must be a field of this type */
    CHECK(l->n == 4 + given, "%s: %d tokens, expected %d", where, l->n, 4 + given);
    (void)nfields;

    wlen = unhex(wire_hex, wire, sizeof wire);
    k = fb_encode_frame(&want, enc, sizeof enc);
    CHECK(k == (int)wlen && !memcmp(enc, wire, wlen), "%s: encoding differs", where);

    fb_parser_init(&p);
    memset(&got, 0xAB, sizeof got);
    for (i = 0; i < wlen; i++) {
        r = fb_parser_feed(&p, wire[i], &got);
        if (i + 1 < wlen)
            CHECK(r == 0, "%s: parser returned %d before the delimiter", where, r);
    }
    CHECK(r == 1, "%s: parser returned %d (%s)", where, r, fb_err_name(r));
    if (r != 1)
        return;
    CHECK(got.version == want.version && got.type == want.type && got.seq == want.seq,
          "%s: header differs", where);
    for (i = 0; i < NFIELDS; i++) {
        const field_t *f = &FIELDS[i];
        if (f->type != want.type)
            continue;
        CHECK(!memcmp((uint8_t *)&got + f->off, (uint8_t *)&want + f->off,
                      field_size(f->kind)),
              "%s: field %s differs", where, f->name);
    }
}

static int err_from_name(const char *s)
{
    int e;
    for (e = FB_ERR_COBS; e >= FB_ERR_LENGTH; e--)
        if (!strcmp(fb_err_name(e), s))
            return e;
    return 1;
}

static void check_error_vector(const line_t *l, const char *where)
{
    uint8_t wire[512];
    size_t wlen = unhex(get(l, "wire"), wire, sizeof wire), i;
    int want = err_from_name(get(l, "error")), got = 0;
    fb_parser_t p;
    fb_msg_t m;
    fb_parser_init(&p);
    for (i = 0; i < wlen; i++) {
        int r = fb_parser_feed(&p, wire[i], &m);
        if (r != 0) {
            CHECK(got == 0, "%s: two results from one frame", where);
            got = r;
        }
    }
    CHECK(got == want, "%s: got %d (%s), expected %s", where, got, fb_err_name(got),
          get(l, "error"));
    if (get(l, "hdr_type")) {
        CHECK(m.type == strtoul(get(l, "hdr_type"), NULL, 0) &&
                  m.seq == strtoul(get(l, "hdr_seq"), NULL, 0),
              "%s: header of the dropped frame not reported", where);
    }
    /* the parser is back in sync: an intact frame right after is received */
    {
        fb_msg_t hb, out;
        uint8_t buf[FB_MAX_WIRE];
        int n, r = 0, k;
        memset(&hb, 0, sizeof hb);
        hb.version = FB_PROTOCOL_VERSION;
        hb.type = FB_HEARTBEAT;
        n = fb_encode_frame(&hb, buf, sizeof buf);
        for (k = 0; k < n; k++)
            r = fb_parser_feed(&p, buf[k], &out);
        CHECK(r == 1, "%s: parser did not resync", where);
    }
}

static int run_vectors(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    int lineno = 0, counted = 0;
    if (!f) {
        fprintf(stderr, "cannot open test vectors %s\n", path);
        return -1;
    }
    while (fgets(buf, sizeof buf, f)) {
        char where[64], *kind, *tok;
        line_t l;
        lineno++;
        buf[strcspn(buf, "\r\n")] = 0;
        if (!buf[0] || buf[0] == '#')
            continue;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        kind = strtok(buf, " ");
        l.n = 0;
        while ((tok = strtok(NULL, " ")) && l.n < MAX_TOKENS) {
            char *eq = strchr(tok, '=');
            if (!eq)
                continue;
            *eq = 0;
            l.key[l.n] = tok;
            l.val[l.n++] = eq + 1;
        }
        counted++;
        if (!strcmp(kind, "crc")) {
            uint8_t in[256];
            size_t n = unhex(get(&l, "input"), in, sizeof in);
            unsigned want = (unsigned)strtoul(get(&l, "crc"), NULL, 16);
            unsigned got = fb_crc16(in, n, 0xFFFF);
            CHECK(got == want, "%s: crc %04x, expected %04x", where, got, want);
        } else if (!strcmp(kind, "cobs")) {
            uint8_t raw[512], enc[520], out[520], dec[520];
            size_t rn = unhex(get(&l, "raw"), raw, sizeof raw);
            size_t en = unhex(get(&l, "enc"), enc, sizeof enc);
            size_t n = fb_cobs_encode(raw, rn, out);
            int d = fb_cobs_decode(enc, en, dec, sizeof dec);
            CHECK(n == en && !memcmp(out, enc, en), "%s: COBS encoding differs", where);
            CHECK(d == (int)rn && !memcmp(dec, raw, rn), "%s: COBS decoding differs", where);
        } else if (!strcmp(kind, "frame")) {
            check_frame_vector(&l, where);
        } else if (!strcmp(kind, "error")) {
            check_error_vector(&l, where);
        } else {
            CHECK(0, "%s: unknown vector kind %s", where, kind);
        }
    }
    fclose(f);
    CHECK(counted > 30, "only %d vectors in %s", counted, path);
    return counted;
}

/* --- kinematics ------------------------------------------------------------------------ */

static int near(float a, float b, float tol) { return fabsf(a - b) <= tol; }

static void test_kinematics(void)
{
    fb_drive_geometry_t g = {0.05f, 0.30f};
    fb_odometry_state_t o;
    float l, r, v, w;
    int i;
    uint32_t tpr = 4096;
    int32_t per_m = (int32_t)(tpr / (2.0f * FB_PI_F * 0.05f) + 0.5f);

    fb_twist_to_wheels(&g, 0.5f, 1.0f, 0.0f, &l, &r);
    CHECK(near(l, (0.5f - 0.15f) / 0.05f, 1e-5f) && near(r, (0.5f + 0.15f) / 0.05f, 1e-5f),
          "wheel speeds %f %f", l, r);
    fb_wheels_to_twist(&g, l, r, &v, &w);
    CHECK(near(v, 0.5f, 1e-5f) && near(w, 1.0f, 1e-5f), "twist %f %f", v, w);
    /* saturation keeps the curvature */
    fb_twist_to_wheels(&g, 2.0f, 2.0f, 10.0f, &l, &r);
    fb_wheels_to_twist(&g, l, r, &v, &w);
    CHECK(near(r, 10.0f, 1e-4f) && near(w / v, 1.0f, 1e-4f), "saturated %f %f", l, r);

    /* straight: 1 m in 100 steps of 10 ms */
    memset(&o, 0, sizeof o);
    fb_odom_update(&o, &g, tpr, 0, 0, 0);
    for (i = 1; i <= 100; i++)
        fb_odom_update(&o, &g, tpr, per_m * i / 100, per_m * i / 100, (uint32_t)i * 10000u);
    CHECK(near(o.x, 1.0f, 2e-3f) && near(o.y, 0.0f, 1e-6f), "straight x=%f y=%f", o.x, o.y);
    CHECK(near(o.v, 1.0f, 0.02f) && near(o.omega, 0.0f, 1e-6f), "v=%f", o.v);

    /* turn on the spot by +pi/2: each wheel travels pi/2 * track/2 */
    {
        float arc = 0.5f * FB_PI_F * 0.15f;
        int32_t t = (int32_t)(arc / (2.0f * FB_PI_F * 0.05f) * (float)tpr + 0.5f);
        memset(&o, 0, sizeof o);
        fb_odom_update(&o, &g, tpr, 0, 0, 0);
        fb_odom_update(&o, &g, tpr, -t, t, 10000);
        CHECK(near(o.theta, 0.5f * FB_PI_F, 2e-3f) && near(o.x, 0.0f, 1e-6f),
              "turn theta=%f", o.theta);
    }

    /* a circle of radius v/w closes on itself; the counters wrap through 2^31 on the way */
    {
        float R = 0.5f, dth = 2.0f * FB_PI_F / 400.0f;
        double L = 0.0, Rt = 0.0;
        int32_t l0 = 0x7FFFF000;
        memset(&o, 0, sizeof o);
        fb_odom_update(&o, &g, tpr, l0, l0, 0);
        for (i = 1; i <= 400; i++) {
            L += (R - 0.15f) * dth;
            Rt += (R + 0.15f) * dth;
            fb_odom_update(&o, &g, tpr,
                           (int32_t)((uint32_t)l0 + (uint32_t)(int32_t)floor(L * per_m)),
                           (int32_t)((uint32_t)l0 + (uint32_t)(int32_t)floor(Rt * per_m)),
                           (uint32_t)i * 5000u);
            if (i == 100)
                CHECK(near(o.x, R, 0.01f) && near(o.y, R, 0.01f) &&
                          near(o.theta, 0.5f * FB_PI_F, 0.01f),
                      "quarter circle at %f %f %f", o.x, o.y, o.theta);
        }
        CHECK(near(o.x, 0.0f, 0.01f) && near(o.y, 0.0f, 0.01f), "circle closes at %f %f",
              o.x, o.y);
    }
    CHECK(near(fb_wrap_angle(3.5f * FB_PI_F), -0.5f * FB_PI_F, 1e-5f), "wrap");
    CHECK(near(fb_wrap_angle(-FB_PI_F), FB_PI_F, 1e-6f), "wrap -pi");
}

static void test_pi(void)
{
    fb_pi_t c;
    float speed = 0.0f, u = 0.0f;
    int i;
    fb_pi_init(&c, 1.0f / 30.0f, 0.02f, 0.3f);
    /* a plant 20% weaker than the feed-forward assumes: the integral closes the gap */
    for (i = 0; i < 2000; i++) {
        u = fb_pi_update(&c, 10.0f, speed, 0.005f);
        speed += (24.0f * u - speed) * (0.005f / 0.03f);
    }
    CHECK(near(speed, 10.0f, 0.05f), "PI settles at %f (duty %f)", speed, u);
    u = fb_pi_update(&c, 1000.0f, 0.0f, 0.005f);
    CHECK(u == 1.0f, "duty saturates at 1, got %f", u);
}

/* --- device core ----------------------------------------------------------------------- */

typedef struct {
    fb_parser_t p;
    fb_msg_t msgs[64];
    int n;
} sink_t;

static void sink_write(void *ctx, const uint8_t *data, uint16_t len)
{
    sink_t *s = (sink_t *)ctx;
    while (len--) {
        fb_msg_t m;
        if (fb_parser_feed(&s->p, *data++, &m) == 1 && s->n < 64)
            s->msgs[s->n++] = m;
    }
}

static const fb_msg_t *find(const sink_t *s, uint8_t type)
{
    int i;
    for (i = s->n - 1; i >= 0; i--)
        if (s->msgs[i].type == type)
            return &s->msgs[i];
    return NULL;
}

static uint16_t g_host_seq;

static void host_send(fb_core_t *c, fb_msg_t *m, uint32_t now)
{
    uint8_t buf[FB_MAX_WIRE];
    int n;
    m->version = FB_PROTOCOL_VERSION;
    m->seq = g_host_seq++;
    n = fb_encode_frame(m, buf, sizeof buf);
    fb_core_rx(c, buf, (uint16_t)n, now);
}

static void send_simple(fb_core_t *c, uint8_t type, uint32_t now)
{
    fb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    if (type == FB_HELLO)
        m.u.hello.nonce = 0xC0FFEE;
    host_send(c, &m, now);
}

static void send_vel(fb_core_t *c, float v, float w, uint16_t timeout_ms, uint32_t now)
{
    fb_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FB_VEL_CMD;
    m.u.vel_cmd.v = v;
    m.u.vel_cmd.omega = w;
    m.u.vel_cmd.timeout_ms = timeout_ms;
    host_send(c, &m, now);
}

static void setup(fb_core_t *c, sink_t *s, uint32_t t0)
{
    fb_config_t cfg;
    fb_config_defaults(&cfg);
    memset(s, 0, sizeof *s);
    fb_parser_init(&s->p);
    fb_core_init(c, &cfg, 7, sink_write, s, t0);
}

static void test_core_session_and_commands(uint32_t t0)
{
    fb_core_t c;
    sink_t s;
    const fb_msg_t *m;
    setup(&c, &s, t0);

    send_vel(&c, 0.5f, 0.0f, 0, t0 + 1000);
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_NO_SESSION, "no motion without a session");
    CHECK(!c.motors_enabled, "motors stay off");

    s.n = 0;
    send_simple(&c, FB_HELLO, t0 + 2000);
    m = find(&s, FB_HELLO_ACK);
    CHECK(m && m->u.hello_ack.nonce == 0xC0FFEE && m->u.hello_ack.device_id == 7,
          "HELLO_ACK echoes the nonce");
    m = find(&s, FB_STATUS);
    CHECK(m && (m->u.status.state & FB_STATE_SESSION), "STATUS after HELLO has SESSION");

    s.n = 0;
    send_vel(&c, 0.5f, 0.2f, 0, t0 + 3000);
    m = find(&s, FB_ODOMETRY);
    CHECK(m && m->u.odometry.cmd_seq == (uint16_t)(g_host_seq - 1),
          "VEL_CMD answered by ODOMETRY carrying its seq");
    CHECK(c.motors_enabled, "motors on after a command");
    fb_core_update(&c, t0 + 3000 + c.cfg.control_period_us, 0, 0);
    CHECK(c.wheel_sp_left > 0.0f && c.wheel_sp_right > c.wheel_sp_left,
          "a left turn forward: %f %f", c.wheel_sp_left, c.wheel_sp_right);
    /* first control step since init: dt = 3 ms + one control period */
    CHECK(near(c.ref_v, c.cfg.max_accel * (0.003f + 1e-6f * (float)c.cfg.control_period_us),
               1e-5f),
          "acceleration limit, ref_v=%f", c.ref_v);

    /* commands beyond the limits are clipped */
    send_vel(&c, 50.0f, -50.0f, 0, t0 + 10000);
    CHECK(c.cmd_v == c.cfg.max_v && c.cmd_omega == -c.cfg.max_omega, "clipped");
    s.n = 0;
    {
        float nan = strtof("nan", NULL);
        send_vel(&c, nan, 0.0f, 0, t0 + 11000);
    }
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_BAD_VALUE, "NaN command refused");
}

static void test_core_watchdog(uint32_t t0)
{
    fb_core_t c;
    sink_t s;
    const fb_msg_t *m;
    uint32_t t;
    setup(&c, &s, t0);
    send_simple(&c, FB_HELLO, t0);
    send_vel(&c, 0.5f, 0.0f, 100, t0 + 1000);
    for (t = t0 + 1000; t - t0 <= 1000 + 100000; t += 1000)
        fb_core_update(&c, t, 0, 0);
    CHECK(c.motors_enabled && !c.watchdog_tripped, "still running at the timeout");
    s.n = 0;
    fb_core_update(&c, t0 + 1000 + 100001, 0, 0);
    CHECK(!c.motors_enabled && c.wheel_sp_left == 0.0f && c.wheel_sp_right == 0.0f,
          "motors zeroed 1 us after the command's timeout");
    m = find(&s, FB_STATUS);
    CHECK(m && (m->u.status.state & FB_STATE_WATCHDOG_TRIPPED) &&
              !(m->u.status.state & FB_STATE_MOTORS_ENABLED),
          "STATUS reports the trip at once");
    /* a fresh command clears it; the default timeout (250 ms) applies to timeout 0 */
    send_vel(&c, 0.5f, 0.0f, 0, t0 + 200000);
    fb_core_update(&c, t0 + 200000 + 250000, 0, 0);
    CHECK(c.motors_enabled, "default timeout not yet over");
    fb_core_update(&c, t0 + 200000 + 250001, 0, 0);
    CHECK(!c.motors_enabled && c.watchdog_tripped, "default timeout over");
}

static void test_core_estop(uint32_t t0)
{
    fb_core_t c;
    sink_t s;
    const fb_msg_t *m;
    setup(&c, &s, t0);

    send_simple(&c, FB_ESTOP, t0);
    CHECK(c.estop_latched && find(&s, FB_ACK), "ESTOP works without a session");
    send_simple(&c, FB_HELLO, t0 + 10);
    s.n = 0;
    send_vel(&c, 0.5f, 0.0f, 0, t0 + 20);
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_ESTOPPED && !c.motors_enabled,
          "commands refused while latched");
    s.n = 0;
    send_simple(&c, FB_ESTOP_RELEASE, t0 + 30);
    CHECK(!c.estop_latched && find(&s, FB_ACK), "released");
    fb_core_update(&c, t0 + 40, 0, 0);
    CHECK(!c.motors_enabled, "still after release until a new command");
    send_vel(&c, 0.5f, 0.0f, 0, t0 + 50);
    fb_core_update(&c, t0 + 60, 0, 0);
    CHECK(c.motors_enabled, "moves on a new command");

    /* hardware input: latches, and blocks the release while active */
    fb_core_set_estop_input(&c, 1);
    CHECK(c.estop_latched && !c.motors_enabled, "input latches");
    s.n = 0;
    send_simple(&c, FB_ESTOP_RELEASE, t0 + 70);
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_ESTOP_INPUT_ACTIVE && c.estop_latched,
          "release refused while the button is pressed");
    fb_core_set_estop_input(&c, 0);
    CHECK(c.estop_latched, "the latch outlives the button");
    send_simple(&c, FB_ESTOP_RELEASE, t0 + 80);
    CHECK(!c.estop_latched, "released once the button is up");
}

static void test_core_host_timeout_params_and_counters(uint32_t t0)
{
    fb_core_t c;
    sink_t s;
    const fb_msg_t *m;
    fb_msg_t req;
    uint8_t junk[] = {0x00, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05, 0x00};
    setup(&c, &s, t0);
    send_simple(&c, FB_HELLO, t0);
    send_vel(&c, 0.2f, 0.0f, 5000, t0);
    fb_core_update(&c, t0 + 1000000, 0, 0);
    CHECK(c.session, "session alive at host_timeout");
    fb_core_update(&c, t0 + 1000001, 0, 0);
    CHECK(!c.session && !c.motors_enabled && (c.faults & FB_FAULT_HOST_TIMEOUT),
          "silent host: session closed, motors off, fault set");
    send_simple(&c, FB_HELLO, t0 + 1000100);
    CHECK(c.session && !(c.faults & FB_FAULT_HOST_TIMEOUT), "new session clears the fault");

    memset(&req, 0, sizeof req);
    req.type = FB_SET_PARAM;
    req.u.set_param.param = FB_PARAM_TRACK_WIDTH;
    req.u.set_param.value = 0.42f;
    s.n = 0;
    host_send(&c, &req, t0 + 1000200);
    CHECK(find(&s, FB_ACK) && c.cfg.geometry.track_width == 0.42f, "track width set");
    req.u.set_param.value = -1.0f;
    s.n = 0;
    host_send(&c, &req, t0 + 1000300);
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_BAD_VALUE && c.cfg.geometry.track_width == 0.42f,
          "bad value refused");
    req.u.set_param.param = 99;
    s.n = 0;
    host_send(&c, &req, t0 + 1000400);
    m = find(&s, FB_NACK);
    CHECK(m && m->u.nack.reason == FB_NACK_UNKNOWN_PARAM, "unknown parameter refused");

    /* loss counting: skip 3 host sequence numbers */
    g_host_seq = (uint16_t)(g_host_seq + 3);
    send_simple(&c, FB_HEARTBEAT, t0 + 1000500);
    CHECK(c.rx_lost == 3, "rx_lost=%u", c.rx_lost);
    /* corrupt frames are counted, the next one is handled */
    fb_core_rx(&c, junk, sizeof junk, t0 + 1000600);
    CHECK(c.rx_errors == 1, "rx_errors=%u", c.rx_errors);
    /* another protocol version is answered with NACK VERSION */
    {
        uint8_t buf[FB_MAX_WIRE];
        int n;
        memset(&req, 0, sizeof req);
        req.version = 2;
        req.type = FB_HEARTBEAT;
        req.seq = 77;
        n = fb_encode_frame(&req, buf, sizeof buf);
        s.n = 0;
        fb_core_rx(&c, buf, (uint16_t)n, t0 + 1000700);
        m = find(&s, FB_NACK);
        CHECK(m && m->u.nack.reason == FB_NACK_VERSION && m->u.nack.ref_seq == 77,
              "NACK VERSION");
    }
}

static void test_core_periodic(uint32_t t0)
{
    fb_core_t c;
    sink_t s;
    uint32_t t;
    int odo = 0, hb = 0, st = 0, i;
    setup(&c, &s, t0);
    fb_core_update(&c, t0, 0, 0);
    CHECK(s.n == 1 && s.msgs[0].type == FB_HEARTBEAT, "heartbeat at boot, nothing else");
    send_simple(&c, FB_HELLO, t0 + 1);
    s.n = 0;
    for (t = t0 + 1; t - t0 < 1000000u; t += 1000) {
        if ((t - t0) % 100000u == 1)
            send_simple(&c, FB_HEARTBEAT, t);
        fb_core_update(&c, t, 0, 0);
        for (i = 0; i < s.n; i++) {
            odo += s.msgs[i].type == FB_ODOMETRY;
            hb += s.msgs[i].type == FB_HEARTBEAT;
            st += s.msgs[i].type == FB_STATUS;
        }
        s.n = 0;
    }
    CHECK(odo >= 49 && odo <= 51, "odometry at 50 Hz: %d", odo);
    CHECK(hb >= 9 && hb <= 11, "heartbeat at 10 Hz: %d", hb);
    CHECK(st >= 4 && st <= 6, "status at 5 Hz: %d", st);
}

/* --- fuzzing the whole core ------------------------------------------------------------ */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static void null_write(void *ctx, const uint8_t *d, uint16_t n)
{
    (void)d;
    *(unsigned long *)ctx += n;
}

static void fuzz_core(unsigned long nbytes, uint64_t seed)
{
    fb_core_t c;
    fb_config_t cfg;
    unsigned long out = 0, fed = 0;
    int failures_before = g_failures;
    uint32_t t = 0xFFF00000u; /* runs through the 32-bit time wrap */
    g_rng ^= seed * 0x2545F4914F6CDD1Dull;
    fb_config_defaults(&cfg);
    fb_core_init(&c, &cfg, 1, null_write, &out, t);
    while (fed < nbytes) {
        uint8_t buf[FB_MAX_WIRE + 8];
        int n, i;
        if (rnd32() % 3 == 0) { /* a valid frame of a random type with random content */
            fb_msg_t m;
            uint8_t *raw = (uint8_t *)&m.u;
            for (i = 0; i < (int)sizeof m.u; i++)
                raw[i] = (uint8_t)rnd32();
            m.version = FB_PROTOCOL_VERSION;
            m.type = (uint8_t)(1 + rnd32() % 12);
            m.seq = (uint16_t)rnd32();
            if (m.type == FB_SET_PARAM)
                m.u.set_param.param = (uint8_t)(rnd32() % 13);
            n = fb_encode_frame(&m, buf, sizeof buf);
            if (n > 0 && rnd32() % 4 == 0)
                buf[rnd32() % (uint32_t)n] ^= (uint8_t)(1u << (rnd32() % 8));
        } else {
            n = (int)(rnd32() % sizeof buf);
            for (i = 0; i < n; i++)
                buf[i] = (uint8_t)(rnd32() % 8 == 0 ? 0 : rnd32());
        }
        if (n > 0) {
            fb_core_rx(&c, buf, (uint16_t)n, t);
            fed += (unsigned long)n;
        }
        t += rnd32() % 20000;
        fb_core_update(&c, t, (int32_t)rnd32(), (int32_t)rnd32());
        CHECK(c.estop_latched ? !c.motors_enabled : 1, "motors on while e-stopped");
        CHECK(c.session || !c.motors_enabled, "motors on without a session");
        CHECK(c.motors_enabled || (c.wheel_sp_left == 0.0f && c.wheel_sp_right == 0.0f),
              "setpoints while disabled");
        if (g_failures != failures_before)
            break;
    }
    printf("fuzz-core: %lu bytes in, %lu bytes out, %u corrupt, %u lost\n", fed, out,
           c.rx_errors, c.rx_lost);
}

/* --- stream mode ----------------------------------------------------------------------- */

static int parse_stream(const char *path)
{
    FILE *f = fopen(path, "rb");
    fb_parser_t p;
    fb_msg_t m;
    unsigned long errs[8] = {0};
    int ch, e;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 2;
    }
    fb_parser_init(&p);
    while ((ch = fgetc(f)) != EOF) {
        int r = fb_parser_feed(&p, (uint8_t)ch, &m);
        if (r == 1)
            printf("%d %u\n", m.type, m.seq);
        else if (r < 0)
            errs[-r]++;
    }
    fclose(f);
    printf("errors");
    for (e = FB_ERR_COBS; e >= FB_ERR_LENGTH; e--)
        printf(" %s=%lu", fb_err_name(e), errs[-e]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *vectors = "../test_vectors.txt";
    int n;
    if (argc >= 3 && !strcmp(argv[1], "--parse"))
        return parse_stream(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "--fuzz-core")) {
        fuzz_core(strtoul(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
        return g_failures ? 1 : 0;
    }
    if (argc >= 2)
        vectors = argv[1];
    n = run_vectors(vectors);
    test_kinematics();
    test_pi();
    test_core_session_and_commands(0);
    test_core_session_and_commands(0xFFFFFF00u); /* across the 32-bit time wrap */
    test_core_watchdog(0);
    test_core_watchdog(0xFFFF0000u);
    test_core_estop(0);
    test_core_host_timeout_params_and_counters(0);
    test_core_host_timeout_params_and_counters(0xFFF00000u);
    test_core_periodic(0);
    test_core_periodic(0xFFFFF000u);
    fuzz_core(200000, 1);
    printf("test_fb: %d vectors, %d checks, %d failures\n", n, g_checks, g_failures);
    return g_failures || n < 0 ? 1 : 0;
}
