/* fb_protocol: the bridge <-> firmware wire protocol (docs/protocol.md).
 *
 * Frame on the wire: COBS(raw) 0x00, with
 *   raw = version u8 | type u8 | seq u16 | body | crc u16      (little-endian)
 * and crc = CRC-16/CCITT-FALSE over version..body.
 *
 * Portable C99: no allocation, no floating-point maths (floats are only copied),
 * fixed-width integers only, so it builds for AVR (int = 16 bit) as well as for hosts.
 */
#ifndef FB_PROTOCOL_H
#define FB_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_PROTOCOL_VERSION 1u
#define FB_HEADER_SIZE 4u
#define FB_CRC_SIZE 2u
#define FB_MAX_BODY 48u
#define FB_MAX_RAW (FB_HEADER_SIZE + FB_MAX_BODY + FB_CRC_SIZE)
#define FB_MAX_ENCODED (FB_MAX_RAW + 1u)
/* leading delimiter + encoded frame + trailing delimiter */
#define FB_MAX_WIRE (FB_MAX_ENCODED + 2u)

enum fb_msg_type {
    FB_HELLO = 0x01,
    FB_HELLO_ACK = 0x02,
    FB_VEL_CMD = 0x03,
    FB_ODOMETRY = 0x04,
    FB_STATUS = 0x05,
    FB_HEARTBEAT = 0x06,
    FB_ESTOP = 0x07,
    FB_ESTOP_RELEASE = 0x08,
    FB_ACK = 0x09,
    FB_NACK = 0x0A,
    FB_SET_PARAM = 0x0B,
    FB_RESET_ODOM = 0x0C
};

enum fb_nack_reason {
    FB_NACK_UNKNOWN_TYPE = 1,
    FB_NACK_BAD_LENGTH = 2,
    FB_NACK_BAD_VALUE = 3,
    FB_NACK_UNKNOWN_PARAM = 4,
    FB_NACK_ESTOPPED = 5,
    FB_NACK_NO_SESSION = 6,
    FB_NACK_VERSION = 7,
    FB_NACK_ESTOP_INPUT_ACTIVE = 8
};

enum fb_param {
    FB_PARAM_WHEEL_RADIUS = 1,
    FB_PARAM_TRACK_WIDTH = 2,
    FB_PARAM_MAX_V = 3,
    FB_PARAM_MAX_OMEGA = 4,
    FB_PARAM_MAX_ACCEL = 5,
    FB_PARAM_MAX_ALPHA = 6,
    FB_PARAM_CMD_TIMEOUT_MS = 7,
    FB_PARAM_ODOM_PERIOD_MS = 8,
    FB_PARAM_STATUS_PERIOD_MS = 9,
    FB_PARAM_HOST_TIMEOUT_MS = 10,
    FB_PARAM_HEARTBEAT_PERIOD_MS = 11
};

/* STATUS.state / HEARTBEAT.state bits */
#define FB_STATE_ESTOP_LATCHED 0x01u
#define FB_STATE_MOTORS_ENABLED 0x02u
#define FB_STATE_WATCHDOG_TRIPPED 0x04u
#define FB_STATE_SESSION 0x08u
#define FB_STATE_ESTOP_INPUT 0x10u

/* STATUS.faults bits */
#define FB_FAULT_OVERCURRENT_LEFT 0x0001u
#define FB_FAULT_OVERCURRENT_RIGHT 0x0002u
#define FB_FAULT_ENCODER_LEFT 0x0004u
#define FB_FAULT_ENCODER_RIGHT 0x0008u
#define FB_FAULT_LOW_BATTERY 0x0010u
#define FB_FAULT_HOST_TIMEOUT 0x0020u
#define FB_FAULT_MOTOR_DRIVER 0x0040u

/* Why a received frame was dropped (names match protocol.FrameErrorKind). */
enum fb_err {
    FB_OK = 0,
    FB_ERR_COBS = -1,
    FB_ERR_SHORT = -2,
    FB_ERR_OVERSIZE = -3,
    FB_ERR_CRC = -4,
    FB_ERR_VERSION = -5,
    FB_ERR_TYPE = -6,
    FB_ERR_LENGTH = -7
};

typedef struct { uint32_t nonce; } fb_hello_t;
typedef struct {
    uint32_t nonce;
    uint8_t fw_major, fw_minor, fw_patch, capabilities;
    uint32_t device_id;
} fb_hello_ack_t;
typedef struct { float v, omega; uint16_t timeout_ms; } fb_vel_cmd_t;
typedef struct {
    uint32_t t_us;
    float x, y, theta, v, omega;
    uint16_t cmd_seq;
} fb_odometry_t;
typedef struct {
    uint32_t t_us;
    uint16_t battery_mv;
    uint8_t battery_pct, state;
    uint16_t faults, rx_errors, rx_lost;
} fb_status_t;
typedef struct { uint32_t uptime_ms; uint8_t state; } fb_heartbeat_t;
typedef struct { uint16_t ref_seq; uint8_t ref_type; } fb_ack_t;
typedef struct { uint16_t ref_seq; uint8_t ref_type, reason; } fb_nack_t;
typedef struct { uint8_t param; float value; } fb_set_param_t;
typedef struct { float x, y, theta; } fb_reset_odom_t;

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    union {
        fb_hello_t hello;
        fb_hello_ack_t hello_ack;
        fb_vel_cmd_t vel_cmd;
        fb_odometry_t odometry;
        fb_status_t status;
        fb_heartbeat_t heartbeat;
        fb_ack_t ack;
        fb_nack_t nack;
        fb_set_param_t set_param;
        fb_reset_odom_t reset_odom;
    } u;
} fb_msg_t;

/* CRC-16/CCITT-FALSE; pass 0xFFFF as crc to start. */
uint16_t fb_crc16(const uint8_t *data, size_t len, uint16_t crc);

/* COBS. encode: out needs len + len/254 + 1 bytes; returns the encoded length.
 * decode: returns the decoded length, or -1 if `in` is not valid COBS or does not fit. */
size_t fb_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
int fb_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* Body size of a message type, or -1 for an unknown type. */
int fb_body_size(uint8_t type);

/* msg -> raw (header, body, crc). Returns the raw length or -1 (unknown type / no room). */
int fb_encode_raw(const fb_msg_t *msg, uint8_t *raw, size_t cap);
/* msg -> COBS(raw) 0x00. Returns the length including the delimiter, or -1. */
int fb_encode_frame(const fb_msg_t *msg, uint8_t *out, size_t cap);
/* raw -> msg. Returns FB_OK or an fb_err. After CRC passes, msg->version/type/seq are set
 * even when the version, type or length is refused, so the receiver can NACK it. */
int fb_decode_raw(const uint8_t *raw, size_t len, fb_msg_t *msg);
/* COBS(raw) without delimiter -> msg. */
int fb_decode_frame(const uint8_t *enc, size_t len, fb_msg_t *msg);

/* Byte-at-a-time streaming parser; resynchronises on every 0x00. */
typedef struct {
    uint8_t buf[FB_MAX_ENCODED];
    uint8_t len;
    uint8_t discarding; /* inside an oversize frame: drop until the next 0x00 */
} fb_parser_t;

void fb_parser_init(fb_parser_t *p);
/* Returns 1 when `byte` completed an intact frame (in *msg), 0 when nothing completed,
 * or a negative fb_err when a frame was dropped (*msg holds its header if the CRC was
 * intact). Never fails on any input. */
int fb_parser_feed(fb_parser_t *p, uint8_t byte, fb_msg_t *msg);

const char *fb_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
