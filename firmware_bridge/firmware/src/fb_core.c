#include "fb_core.h"

#include <math.h>
#include <string.h>

void fb_config_defaults(fb_config_t *c)
{
    c->geometry.wheel_radius = 0.05f;
    c->geometry.track_width = 0.30f;
    c->max_v = 1.0f;
    c->max_omega = 3.0f;
    c->max_accel = 2.0f;
    c->max_alpha = 6.0f;
    c->cmd_timeout_ms = 250;
    c->odom_period_ms = 20;
    c->status_period_ms = 200;
    c->host_timeout_ms = 1000;
    c->heartbeat_period_ms = 100;
    c->max_wheel_speed = 30.0f;
    c->ticks_per_rev = 4096;
    c->control_period_us = 5000;
}

static uint32_t elapsed(uint32_t now, uint32_t then) { return now - then; }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static float approach(float cur, float target, float step)
{
    if (target > cur)
        return cur + step < target ? cur + step : target;
    return cur - step > target ? cur - step : target;
}

static int is_finite(float x) { return x == x && x - x == 0.0f; }

/* --- transmit -------------------------------------------------------------------------- */

static void send(fb_core_t *c, fb_msg_t *m)
{
    uint8_t buf[FB_MAX_WIRE];
    int n;
    m->version = FB_PROTOCOL_VERSION;
    m->seq = c->tx_seq++;
    buf[0] = 0; /* leading delimiter: the host resyncs even after line noise */
    n = fb_encode_frame(m, buf + 1, sizeof buf - 1);
    if (n > 0)
        c->write(c->write_ctx, buf, (uint16_t)(n + 1));
}

static void send_ack(fb_core_t *c, const fb_msg_t *req)
{
    fb_msg_t m;
    m.type = FB_ACK;
    m.u.ack.ref_seq = req->seq;
    m.u.ack.ref_type = req->type;
    send(c, &m);
}

static void send_nack(fb_core_t *c, const fb_msg_t *req, uint8_t reason)
{
    fb_msg_t m;
    m.type = FB_NACK;
    m.u.nack.ref_seq = req->seq;
    m.u.nack.ref_type = req->type;
    m.u.nack.reason = reason;
    send(c, &m);
}

static void send_odometry(fb_core_t *c)
{
    fb_msg_t m;
    m.type = FB_ODOMETRY;
    m.u.odometry.t_us = c->now_us;
    m.u.odometry.x = c->odom.x;
    m.u.odometry.y = c->odom.y;
    m.u.odometry.theta = c->odom.theta;
    m.u.odometry.v = c->odom.v;
    m.u.odometry.omega = c->odom.omega;
    m.u.odometry.cmd_seq = c->cmd_seq;
    send(c, &m);
    c->last_odom_tx_us = c->now_us;
}

static void send_status(fb_core_t *c)
{
    fb_msg_t m;
    m.type = FB_STATUS;
    m.u.status.t_us = c->now_us;
    m.u.status.battery_mv = c->battery_mv;
    m.u.status.battery_pct = c->battery_pct;
    m.u.status.state = fb_core_state(c);
    m.u.status.faults = c->faults;
    m.u.status.rx_errors = c->rx_errors;
    m.u.status.rx_lost = c->rx_lost;
    send(c, &m);
    c->last_status_tx_us = c->now_us;
    c->status_dirty = 0;
}

static void send_heartbeat(fb_core_t *c)
{
    fb_msg_t m;
    m.type = FB_HEARTBEAT;
    m.u.heartbeat.uptime_ms = elapsed(c->now_us, c->boot_us) / 1000u;
    m.u.heartbeat.state = fb_core_state(c);
    send(c, &m);
    c->last_hb_tx_us = c->now_us;
}

/* --- state ----------------------------------------------------------------------------- */

uint8_t fb_core_state(const fb_core_t *c)
{
    uint8_t s = 0;
    if (c->estop_latched)
        s |= FB_STATE_ESTOP_LATCHED;
    if (c->motors_enabled)
        s |= FB_STATE_MOTORS_ENABLED;
    if (c->watchdog_tripped)
        s |= FB_STATE_WATCHDOG_TRIPPED;
    if (c->session)
        s |= FB_STATE_SESSION;
    if (c->estop_input)
        s |= FB_STATE_ESTOP_INPUT;
    return s;
}

/* Motors off now: no ramp-down, the setpoints drop to zero in this very call. */
static void stop_motors(fb_core_t *c)
{
    c->cmd_active = 0;
    c->motors_enabled = 0;
    c->ref_v = 0.0f;
    c->ref_omega = 0.0f;
    c->wheel_sp_left = 0.0f;
    c->wheel_sp_right = 0.0f;
}

static void latch_estop(fb_core_t *c)
{
    if (!c->estop_latched)
        c->status_dirty = 1;
    c->estop_latched = 1;
    stop_motors(c);
}

void fb_core_init(fb_core_t *c, const fb_config_t *cfg, uint32_t device_id, fb_write_fn write,
                  void *write_ctx, uint32_t now_us)
{
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->device_id = device_id;
    c->write = write;
    c->write_ctx = write_ctx;
    fb_parser_init(&c->parser);
    c->now_us = c->boot_us = now_us;
    c->last_control_us = c->last_odom_tx_us = c->last_status_tx_us = now_us;
    c->last_hb_tx_us = now_us - (uint32_t)cfg->heartbeat_period_ms * 1000u; /* one at boot */
    c->battery_pct = 255;
}

void fb_core_set_estop_input(fb_core_t *c, uint8_t active)
{
    if (active != c->estop_input)
        c->status_dirty = 1;
    c->estop_input = active ? 1 : 0;
    if (active)
        latch_estop(c);
}

void fb_core_set_battery(fb_core_t *c, uint16_t mv, uint8_t pct)
{
    c->battery_mv = mv;
    c->battery_pct = pct;
}

void fb_core_set_faults(fb_core_t *c, uint16_t faults)
{
    /* HOST_TIMEOUT is the core's own; the board reports the rest */
    uint16_t f = (uint16_t)((faults & (uint16_t)~FB_FAULT_HOST_TIMEOUT) |
                            (c->faults & FB_FAULT_HOST_TIMEOUT));
    if (f != c->faults)
        c->status_dirty = 1;
    c->faults = f;
}

uint8_t fb_core_set_param(fb_core_t *c, uint8_t param, float value)
{
    fb_config_t *g = &c->cfg;
    uint16_t ms;
    if (!is_finite(value))
        return FB_NACK_BAD_VALUE;
    ms = (value >= 0.0f && value <= 65535.0f) ? (uint16_t)(value + 0.5f) : 0;
    switch (param) {
    case FB_PARAM_WHEEL_RADIUS:
        if (!(value > 0.001f && value <= 1.0f))
            return FB_NACK_BAD_VALUE;
        g->geometry.wheel_radius = value;
        break;
    case FB_PARAM_TRACK_WIDTH:
        if (!(value > 0.01f && value <= 5.0f))
            return FB_NACK_BAD_VALUE;
        g->geometry.track_width = value;
        break;
    case FB_PARAM_MAX_V:
        if (!(value > 0.0f && value <= 20.0f))
            return FB_NACK_BAD_VALUE;
        g->max_v = value;
        break;
    case FB_PARAM_MAX_OMEGA:
        if (!(value > 0.0f && value <= 50.0f))
            return FB_NACK_BAD_VALUE;
        g->max_omega = value;
        break;
    case FB_PARAM_MAX_ACCEL:
        if (!(value > 0.0f && value <= 1000.0f))
            return FB_NACK_BAD_VALUE;
        g->max_accel = value;
        break;
    case FB_PARAM_MAX_ALPHA:
        if (!(value > 0.0f && value <= 1000.0f))
            return FB_NACK_BAD_VALUE;
        g->max_alpha = value;
        break;
    case FB_PARAM_CMD_TIMEOUT_MS:
        if (ms < 10)
            return FB_NACK_BAD_VALUE;
        g->cmd_timeout_ms = ms;
        break;
    case FB_PARAM_ODOM_PERIOD_MS: /* 0: only in reply to VEL_CMD */
        if (!(value >= 0.0f && value <= 65535.0f))
            return FB_NACK_BAD_VALUE;
        g->odom_period_ms = ms;
        break;
    case FB_PARAM_STATUS_PERIOD_MS:
        if (ms < 10)
            return FB_NACK_BAD_VALUE;
        g->status_period_ms = ms;
        break;
    case FB_PARAM_HOST_TIMEOUT_MS:
        if (ms < 50)
            return FB_NACK_BAD_VALUE;
        g->host_timeout_ms = ms;
        break;
    case FB_PARAM_HEARTBEAT_PERIOD_MS:
        if (ms < 10)
            return FB_NACK_BAD_VALUE;
        g->heartbeat_period_ms = ms;
        break;
    default:
        return FB_NACK_UNKNOWN_PARAM;
    }
    return 0;
}

/* --- receive --------------------------------------------------------------------------- */

static void handle(fb_core_t *c, const fb_msg_t *m)
{
    c->host_rx_us = c->now_us;
    if (c->session && c->host_seq_valid) {
        uint16_t gap = (uint16_t)(m->seq - c->host_seq - 1u);
        if (gap != 0 && gap < 0x8000u)
            c->rx_lost = (uint16_t)(c->rx_lost + gap);
    }
    c->host_seq = m->seq;
    c->host_seq_valid = 1;

    switch (m->type) {
    case FB_HELLO: {
        fb_msg_t r;
        c->session = 1;
        c->faults &= (uint16_t)~FB_FAULT_HOST_TIMEOUT;
        stop_motors(c);
        c->cmd_seq = 0;
        r.type = FB_HELLO_ACK;
        r.u.hello_ack.nonce = m->u.hello.nonce;
        r.u.hello_ack.fw_major = FB_FW_MAJOR;
        r.u.hello_ack.fw_minor = FB_FW_MINOR;
        r.u.hello_ack.fw_patch = FB_FW_PATCH;
        r.u.hello_ack.capabilities = 0;
        r.u.hello_ack.device_id = c->device_id;
        send(c, &r);
        send_status(c); /* the host learns the e-stop and fault state right away */
        return;
    }
    case FB_ESTOP: /* honoured with or without a session */
        latch_estop(c);
        send_ack(c, m);
        return;
    default:
        break;
    }
    if (!c->session) {
        send_nack(c, m, FB_NACK_NO_SESSION);
        return;
    }
    switch (m->type) {
    case FB_HEARTBEAT:
        break;
    case FB_VEL_CMD: {
        const fb_vel_cmd_t *v = &m->u.vel_cmd;
        uint16_t timeout_ms = v->timeout_ms ? v->timeout_ms : c->cfg.cmd_timeout_ms;
        if (c->estop_latched) {
            send_nack(c, m, FB_NACK_ESTOPPED);
            break;
        }
        if (!is_finite(v->v) || !is_finite(v->omega)) {
            send_nack(c, m, FB_NACK_BAD_VALUE);
            break;
        }
        c->cmd_v = clampf(v->v, -c->cfg.max_v, c->cfg.max_v);
        c->cmd_omega = clampf(v->omega, -c->cfg.max_omega, c->cfg.max_omega);
        c->cmd_rx_us = c->now_us;
        c->cmd_timeout_us = (uint32_t)timeout_ms * 1000u;
        c->cmd_seq = m->seq;
        if (!c->cmd_active || c->watchdog_tripped)
            c->status_dirty = 1;
        c->cmd_active = 1;
        c->watchdog_tripped = 0;
        c->motors_enabled = 1;
        send_odometry(c); /* the reply: carries cmd_seq, so the host measures round trips */
        break;
    }
    case FB_ESTOP_RELEASE:
        if (c->estop_input) {
            send_nack(c, m, FB_NACK_ESTOP_INPUT_ACTIVE);
            break;
        }
        if (c->estop_latched)
            c->status_dirty = 1;
        c->estop_latched = 0;
        stop_motors(c); /* still until the next VEL_CMD */
        send_ack(c, m);
        break;
    case FB_SET_PARAM: {
        uint8_t reason = fb_core_set_param(c, m->u.set_param.param, m->u.set_param.value);
        if (reason)
            send_nack(c, m, reason);
        else
            send_ack(c, m);
        break;
    }
    case FB_RESET_ODOM: {
        const fb_reset_odom_t *r = &m->u.reset_odom;
        if (!is_finite(r->x) || !is_finite(r->y) || !is_finite(r->theta)) {
            send_nack(c, m, FB_NACK_BAD_VALUE);
            break;
        }
        fb_odom_reset(&c->odom, r->x, r->y, r->theta);
        send_ack(c, m);
        break;
    }
    default: /* a device-to-host type sent to the device */
        send_nack(c, m, FB_NACK_UNKNOWN_TYPE);
        break;
    }
    if (c->status_dirty)
        send_status(c);
}

void fb_core_rx(fb_core_t *c, const uint8_t *data, uint16_t len, uint32_t now_us)
{
    c->now_us = now_us;
    while (len--) {
        fb_msg_t m;
        int r = fb_parser_feed(&c->parser, *data++, &m);
        if (r == 1) {
            handle(c, &m);
        } else if (r == FB_ERR_VERSION) {
            send_nack(c, &m, FB_NACK_VERSION);
        } else if (r == FB_ERR_TYPE) {
            send_nack(c, &m, FB_NACK_UNKNOWN_TYPE);
        } else if (r == FB_ERR_LENGTH) {
            send_nack(c, &m, FB_NACK_BAD_LENGTH);
        } else if (r < 0) {
            c->rx_errors++;
        }
    }
}

/* --- periodic -------------------------------------------------------------------------- */

int fb_core_update(fb_core_t *c, uint32_t now_us, int32_t left_ticks, int32_t right_ticks)
{
    int stepped = 0;
    c->now_us = now_us;

    if (c->session &&
        elapsed(now_us, c->host_rx_us) > (uint32_t)c->cfg.host_timeout_ms * 1000u) {
        c->session = 0;
        c->faults |= FB_FAULT_HOST_TIMEOUT;
        stop_motors(c);
        c->status_dirty = 1;
    }
    /* the watchdog: checked on every call, not only on control steps */
    if (c->cmd_active && elapsed(now_us, c->cmd_rx_us) > c->cmd_timeout_us) {
        stop_motors(c);
        c->watchdog_tripped = 1;
        c->status_dirty = 1;
    }
    if (!c->session || c->estop_latched || !c->cmd_active)
        stop_motors(c);
    else
        c->motors_enabled = 1;

    if (elapsed(now_us, c->last_control_us) >= c->cfg.control_period_us) {
        float dt = (float)elapsed(now_us, c->last_control_us) * 1e-6f;
        if (dt > 0.1f)
            dt = 0.1f; /* a stalled loop must not turn into one huge acceleration step */
        c->last_control_us = now_us;
        fb_odom_update(&c->odom, &c->cfg.geometry, c->cfg.ticks_per_rev, left_ticks,
                       right_ticks, now_us);
        fb_twist_to_wheels(&c->cfg.geometry, c->odom.v, c->odom.omega, 0.0f,
                           &c->wheel_meas_left, &c->wheel_meas_right);
        if (c->cmd_active) {
            c->ref_v = approach(c->ref_v, c->cmd_v, c->cfg.max_accel * dt);
            c->ref_omega = approach(c->ref_omega, c->cmd_omega, c->cfg.max_alpha * dt);
            fb_twist_to_wheels(&c->cfg.geometry, c->ref_v, c->ref_omega,
                               c->cfg.max_wheel_speed, &c->wheel_sp_left, &c->wheel_sp_right);
        }
        stepped = 1;
    }

    if (elapsed(now_us, c->last_hb_tx_us) >= (uint32_t)c->cfg.heartbeat_period_ms * 1000u)
        send_heartbeat(c);
    if (c->session) {
        if (c->cfg.odom_period_ms &&
            elapsed(now_us, c->last_odom_tx_us) >= (uint32_t)c->cfg.odom_period_ms * 1000u)
            send_odometry(c);
        if (c->status_dirty ||
            elapsed(now_us, c->last_status_tx_us) >= (uint32_t)c->cfg.status_period_ms * 1000u)
            send_status(c);
    }
    return stepped;
}
