#include "fb_protocol.h"

#include <string.h>

uint16_t fb_crc16(const uint8_t *data, size_t len, uint16_t crc)
{
    /* bitwise: 256 bytes of table would cost a quarter of an Uno's spare RAM */
    while (len--) {
        uint8_t i;
        crc ^= (uint16_t)((uint16_t)*data++ << 8);
        for (i = 0; i < 8; i++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

size_t fb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t *dst = out;
    uint8_t *codep = dst++;
    uint8_t code = 1;
    while (len--) {
        uint8_t b = *in++;
        if (b) {
            *dst++ = b;
            code++;
        }
        if (!b || code == 0xFF) {
            *codep = code;
            code = 1;
            codep = dst;
            /* a full block at the very end needs no trailing code byte */
            if (!b || len)
                dst++;
        }
    }
    *codep = code;
    return (size_t)(dst - out);
}

int fb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t i = 0, n = 0;
    while (i < len) {
        uint8_t code = in[i++];
        uint8_t k;
        if (code == 0 || (size_t)(code - 1) > len - i)
            return -1;
        for (k = 1; k < code; k++) {
            uint8_t b = in[i++];
            if (b == 0 || n >= out_cap)
                return -1;
            out[n++] = b;
        }
        if (code != 0xFF && i < len) {
            if (n >= out_cap)
                return -1;
            out[n++] = 0;
        }
    }
    return (int)n;
}

int fb_body_size(uint8_t type)
{
    switch (type) {
    case FB_HELLO: return 4;
    case FB_HELLO_ACK: return 12;
    case FB_VEL_CMD: return 10;
    case FB_ODOMETRY: return 26;
    case FB_STATUS: return 14;
    case FB_HEARTBEAT: return 5;
    case FB_ESTOP: return 0;
    case FB_ESTOP_RELEASE: return 0;
    case FB_ACK: return 3;
    case FB_NACK: return 4;
    case FB_SET_PARAM: return 5;
    case FB_RESET_ODOM: return 12;
    default: return -1;
    }
}

/* little-endian field access; floats are IEEE-754 binary32 on every supported target */
static uint8_t *put_u8(uint8_t *p, uint8_t v) { *p = v; return p + 1; }
static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}
static uint8_t *put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return put_u32(p, u);
}
static const uint8_t *get_u8(const uint8_t *p, uint8_t *v) { *v = *p; return p + 1; }
static const uint8_t *get_u16(const uint8_t *p, uint16_t *v)
{
    *v = (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
    return p + 2;
}
static const uint8_t *get_u32(const uint8_t *p, uint32_t *v)
{
    *v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
    return p + 4;
}
static const uint8_t *get_f32(const uint8_t *p, float *f)
{
    uint32_t u;
    p = get_u32(p, &u);
    memcpy(f, &u, 4);
    return p;
}

int fb_encode_raw(const fb_msg_t *m, uint8_t *raw, size_t cap)
{
    int body = fb_body_size(m->type);
    uint8_t *p = raw;
    uint16_t crc;
    if (body < 0 || cap < (size_t)(FB_HEADER_SIZE + body + FB_CRC_SIZE))
        return -1;
    p = put_u8(p, m->version);
    p = put_u8(p, m->type);
    p = put_u16(p, m->seq);
    switch (m->type) {
    case FB_HELLO:
        p = put_u32(p, m->u.hello.nonce);
        break;
    case FB_HELLO_ACK:
        p = put_u32(p, m->u.hello_ack.nonce);
        p = put_u8(p, m->u.hello_ack.fw_major);
        p = put_u8(p, m->u.hello_ack.fw_minor);
        p = put_u8(p, m->u.hello_ack.fw_patch);
        p = put_u8(p, m->u.hello_ack.capabilities);
        p = put_u32(p, m->u.hello_ack.device_id);
        break;
    case FB_VEL_CMD:
        p = put_f32(p, m->u.vel_cmd.v);
        p = put_f32(p, m->u.vel_cmd.omega);
        p = put_u16(p, m->u.vel_cmd.timeout_ms);
        break;
    case FB_ODOMETRY:
        p = put_u32(p, m->u.odometry.t_us);
        p = put_f32(p, m->u.odometry.x);
        p = put_f32(p, m->u.odometry.y);
        p = put_f32(p, m->u.odometry.theta);
        p = put_f32(p, m->u.odometry.v);
        p = put_f32(p, m->u.odometry.omega);
        p = put_u16(p, m->u.odometry.cmd_seq);
        break;
    case FB_STATUS:
        p = put_u32(p, m->u.status.t_us);
        p = put_u16(p, m->u.status.battery_mv);
        p = put_u8(p, m->u.status.battery_pct);
        p = put_u8(p, m->u.status.state);
        p = put_u16(p, m->u.status.faults);
        p = put_u16(p, m->u.status.rx_errors);
        p = put_u16(p, m->u.status.rx_lost);
        break;
    case FB_HEARTBEAT:
        p = put_u32(p, m->u.heartbeat.uptime_ms);
        p = put_u8(p, m->u.heartbeat.state);
        break;
    case FB_ESTOP:
    case FB_ESTOP_RELEASE:
        break;
    case FB_ACK:
        p = put_u16(p, m->u.ack.ref_seq);
        p = put_u8(p, m->u.ack.ref_type);
        break;
    case FB_NACK:
        p = put_u16(p, m->u.nack.ref_seq);
        p = put_u8(p, m->u.nack.ref_type);
        p = put_u8(p, m->u.nack.reason);
        break;
    case FB_SET_PARAM:
        p = put_u8(p, m->u.set_param.param);
        p = put_f32(p, m->u.set_param.value);
        break;
    case FB_RESET_ODOM:
        p = put_f32(p, m->u.reset_odom.x);
        p = put_f32(p, m->u.reset_odom.y);
        p = put_f32(p, m->u.reset_odom.theta);
        break;
    default:
        return -1;
    }
    crc = fb_crc16(raw, (size_t)(p - raw), 0xFFFF);
    p = put_u16(p, crc);
    return (int)(p - raw);
}

int fb_encode_frame(const fb_msg_t *m, uint8_t *out, size_t cap)
{
    uint8_t raw[FB_MAX_RAW];
    int n = fb_encode_raw(m, raw, sizeof raw);
    size_t enc;
    if (n < 0 || cap < (size_t)n + (size_t)n / 254u + 2u)
        return -1;
    enc = fb_cobs_encode(raw, (size_t)n, out);
    out[enc] = 0;
    return (int)enc + 1;
}

int fb_decode_raw(const uint8_t *raw, size_t len, fb_msg_t *m)
{
    const uint8_t *p = raw;
    uint16_t crc, want;
    int body;
    if (len < FB_HEADER_SIZE + FB_CRC_SIZE)
        return FB_ERR_SHORT;
    get_u16(raw + len - FB_CRC_SIZE, &crc);
    want = fb_crc16(raw, len - FB_CRC_SIZE, 0xFFFF);
    if (crc != want)
        return FB_ERR_CRC;
    p = get_u8(p, &m->version);
    p = get_u8(p, &m->type);
    p = get_u16(p, &m->seq);
    if (m->version != FB_PROTOCOL_VERSION)
        return FB_ERR_VERSION;
    body = fb_body_size(m->type);
    if (body < 0)
        return FB_ERR_TYPE;
    if ((size_t)body != len - FB_HEADER_SIZE - FB_CRC_SIZE)
        return FB_ERR_LENGTH;
    switch (m->type) {
    case FB_HELLO:
        get_u32(p, &m->u.hello.nonce);
        break;
    case FB_HELLO_ACK:
        p = get_u32(p, &m->u.hello_ack.nonce);
        p = get_u8(p, &m->u.hello_ack.fw_major);
        p = get_u8(p, &m->u.hello_ack.fw_minor);
        p = get_u8(p, &m->u.hello_ack.fw_patch);
        p = get_u8(p, &m->u.hello_ack.capabilities);
        get_u32(p, &m->u.hello_ack.device_id);
        break;
    case FB_VEL_CMD:
        p = get_f32(p, &m->u.vel_cmd.v);
        p = get_f32(p, &m->u.vel_cmd.omega);
        get_u16(p, &m->u.vel_cmd.timeout_ms);
        break;
    case FB_ODOMETRY:
        p = get_u32(p, &m->u.odometry.t_us);
        p = get_f32(p, &m->u.odometry.x);
        p = get_f32(p, &m->u.odometry.y);
        p = get_f32(p, &m->u.odometry.theta);
        p = get_f32(p, &m->u.odometry.v);
        p = get_f32(p, &m->u.odometry.omega);
        get_u16(p, &m->u.odometry.cmd_seq);
        break;
    case FB_STATUS:
        p = get_u32(p, &m->u.status.t_us);
        p = get_u16(p, &m->u.status.battery_mv);
        p = get_u8(p, &m->u.status.battery_pct);
        p = get_u8(p, &m->u.status.state);
        p = get_u16(p, &m->u.status.faults);
        p = get_u16(p, &m->u.status.rx_errors);
        get_u16(p, &m->u.status.rx_lost);
        break;
    case FB_HEARTBEAT:
        p = get_u32(p, &m->u.heartbeat.uptime_ms);
        get_u8(p, &m->u.heartbeat.state);
        break;
    case FB_ESTOP:
    case FB_ESTOP_RELEASE:
        break;
    case FB_ACK:
        p = get_u16(p, &m->u.ack.ref_seq);
        get_u8(p, &m->u.ack.ref_type);
        break;
    case FB_NACK:
        p = get_u16(p, &m->u.nack.ref_seq);
        p = get_u8(p, &m->u.nack.ref_type);
        get_u8(p, &m->u.nack.reason);
        break;
    case FB_SET_PARAM:
        p = get_u8(p, &m->u.set_param.param);
        get_f32(p, &m->u.set_param.value);
        break;
    case FB_RESET_ODOM:
        p = get_f32(p, &m->u.reset_odom.x);
        p = get_f32(p, &m->u.reset_odom.y);
        get_f32(p, &m->u.reset_odom.theta);
        break;
    default:
        return FB_ERR_TYPE;
    }
    return FB_OK;
}

int fb_decode_frame(const uint8_t *enc, size_t len, fb_msg_t *m)
{
    uint8_t raw[FB_MAX_RAW];
    int n;
    if (len > FB_MAX_ENCODED)
        return FB_ERR_OVERSIZE;
    n = fb_cobs_decode(enc, len, raw, sizeof raw);
    if (n < 0)
        return FB_ERR_COBS;
    return fb_decode_raw(raw, (size_t)n, m);
}

void fb_parser_init(fb_parser_t *p)
{
    p->len = 0;
    p->discarding = 0;
}

int fb_parser_feed(fb_parser_t *p, uint8_t byte, fb_msg_t *m)
{
    if (byte == 0) {
        uint8_t n = p->len;
        p->len = 0;
        if (p->discarding) {
            p->discarding = 0;
            return 0;
        }
        if (n == 0)
            return 0;
        {
            int r = fb_decode_frame(p->buf, n, m);
            return r == FB_OK ? 1 : r;
        }
    }
    if (p->discarding)
        return 0;
    if (p->len >= FB_MAX_ENCODED) {
        p->len = 0;
        p->discarding = 1;
        return FB_ERR_OVERSIZE;
    }
    p->buf[p->len++] = byte;
    return 0;
}

const char *fb_err_name(int err)
{
    switch (err) {
    case FB_OK: return "ok";
    case FB_ERR_COBS: return "cobs";
    case FB_ERR_SHORT: return "short";
    case FB_ERR_OVERSIZE: return "oversize";
    case FB_ERR_CRC: return "crc";
    case FB_ERR_VERSION: return "version";
    case FB_ERR_TYPE: return "type";
    case FB_ERR_LENGTH: return "length";
    default: return "?";
    }
}
