/* fb_kinematics: differential-drive kinematics and encoder odometry (portable C99). */
#ifndef FB_KINEMATICS_H
#define FB_KINEMATICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FB_PI_F 3.14159265358979f

typedef struct {
    float wheel_radius; /* m */
    float track_width;  /* m, between the wheel contact points */
} fb_drive_geometry_t;

/* Body twist (v m/s, omega rad/s) -> wheel angular speeds (rad/s). If a wheel would
 * exceed max_wheel (rad/s, > 0), both are scaled down together so the path curvature
 * is kept. */
void fb_twist_to_wheels(const fb_drive_geometry_t *g, float v, float omega, float max_wheel,
                        float *left, float *right);
/* Wheel angular speeds (rad/s) -> body twist. */
void fb_wheels_to_twist(const fb_drive_geometry_t *g, float left, float right, float *v,
                        float *omega);

/* Odometry integrated from encoder tick counts. */
typedef struct {
    float x, y, theta; /* theta in (-pi, pi] */
    float v, omega;    /* estimated over a short window of control steps */
    int32_t last_left, last_right;
    uint8_t primed;
    /* velocity window: the last FB_ODOM_WINDOW (ticks, time) samples */
#define FB_ODOM_WINDOW 4
    int32_t win_left[FB_ODOM_WINDOW], win_right[FB_ODOM_WINDOW];
    uint32_t win_t_us[FB_ODOM_WINDOW];
    uint8_t win_head, win_count;
} fb_odometry_state_t;

void fb_odom_reset(fb_odometry_state_t *o, float x, float y, float theta);
/* Integrate the change of the cumulative tick counts since the last call (midpoint rule
 * along the arc). Tick counters may wrap: differences are taken modulo 2^32. */
void fb_odom_update(fb_odometry_state_t *o, const fb_drive_geometry_t *g,
                    uint32_t ticks_per_rev, int32_t left_ticks, int32_t right_ticks,
                    uint32_t now_us);
float fb_wrap_angle(float a);

#ifdef __cplusplus
}
#endif
#endif
