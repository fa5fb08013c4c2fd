/* fb_core: the robot side of the bridge protocol, independent of any board.
 *
 * The board layer (Arduino sketch, host emulator) owns the hardware and calls:
 *   fb_core_rx()      with every byte received from the host,
 *   fb_core_update()  as often as it can, with the time and the encoder counts,
 * then drives the motors: when `motors_enabled` is 0 the motor outputs must be zero (and
 * the driver disabled/braking); otherwise each wheel tracks `wheel_sp_*` (rad/s), e.g.
 * with fb_pi against `wheel_meas_*`.
 *
 * Safety behaviour lives here, so every board gets it:
 *  - watchdog: a VEL_CMD is valid for its own timeout (or cmd_timeout_ms); when it
 *    expires without a newer one the motors are zeroed at once (not ramped);
 *  - e-stop latch: set by ESTOP or the hardware input, cleared only by ESTOP_RELEASE
 *    while the input is inactive; the robot then stays still until a new VEL_CMD;
 *  - no motion without a session (HELLO), and a session ends when the host falls silent.
 *
 * Times are uint32 microseconds from any free-running clock; every comparison is a
 * wrap-safe difference.
 */
#ifndef FB_CORE_H
#define FB_CORE_H

#include <stdint.h>

#include "fb_kinematics.h"
#include "fb_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FB_FW_MAJOR 1
#define FB_FW_MINOR 0
#define FB_FW_PATCH 0

typedef void (*fb_write_fn)(void *ctx, const uint8_t *data, uint16_t len);

typedef struct {
    /* settable with SET_PARAM */
    fb_drive_geometry_t geometry;
    float max_v, max_omega, max_accel, max_alpha;
    uint16_t cmd_timeout_ms, odom_period_ms, status_period_ms, host_timeout_ms,
        heartbeat_period_ms;
    /* board constants */
    float max_wheel_speed;     /* rad/s at full duty */
    uint32_t ticks_per_rev;    /* encoder ticks per wheel revolution */
    uint32_t control_period_us;
} fb_config_t;

void fb_config_defaults(fb_config_t *c);

typedef struct {
    fb_config_t cfg;
    uint32_t device_id;
    fb_write_fn write;
    void *write_ctx;
    fb_parser_t parser;
    uint16_t tx_seq;
    uint32_t now_us, boot_us;

    /* session with the host */
    uint8_t session;
    uint8_t host_seq_valid;
    uint16_t host_seq;
    uint32_t host_rx_us;

    /* the velocity command and the watchdog */
    uint8_t cmd_active;
    float cmd_v, cmd_omega;
    uint32_t cmd_rx_us, cmd_timeout_us;
    uint16_t cmd_seq;
    uint8_t watchdog_tripped;
    float ref_v, ref_omega; /* command after the acceleration limits */

    uint8_t estop_latched, estop_input;

    fb_odometry_state_t odom;
    uint32_t last_control_us;

    /* outputs to the board */
    uint8_t motors_enabled;
    float wheel_sp_left, wheel_sp_right;     /* rad/s */
    float wheel_meas_left, wheel_meas_right; /* rad/s, from the encoders */

    /* health, reported in STATUS */
    uint16_t battery_mv;
    uint8_t battery_pct;
    uint16_t faults;
    uint16_t rx_errors, rx_lost;

    uint32_t last_odom_tx_us, last_status_tx_us, last_hb_tx_us;
    uint8_t status_dirty;
} fb_core_t;

void fb_core_init(fb_core_t *c, const fb_config_t *cfg, uint32_t device_id, fb_write_fn write,
                  void *write_ctx, uint32_t now_us);
/* Bytes from the host. */
void fb_core_rx(fb_core_t *c, const uint8_t *data, uint16_t len, uint32_t now_us);
/* Watchdogs, control step, periodic messages. Returns 1 when a control step ran (the
 * board then updates its wheel controllers with dt = cfg.control_period_us). */
int fb_core_update(fb_core_t *c, uint32_t now_us, int32_t left_ticks, int32_t right_ticks);
void fb_core_set_estop_input(fb_core_t *c, uint8_t active);
void fb_core_set_battery(fb_core_t *c, uint16_t mv, uint8_t pct);
void fb_core_set_faults(fb_core_t *c, uint16_t faults);
uint8_t fb_core_state(const fb_core_t *c);
/* Apply SET_PARAM; returns 0 or an fb_nack_reason. */
uint8_t fb_core_set_param(fb_core_t *c, uint8_t param, float value);

#ifdef __cplusplus
}
#endif
#endif
