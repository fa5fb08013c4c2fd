#include "fb_kinematics.h"

#include <math.h>

void fb_twist_to_wheels(const fb_drive_geometry_t *g, float v, float omega, float max_wheel,
                        float *left, float *right)
{
    float half = 0.5f * g->track_width;
    float l = (v - omega * half) / g->wheel_radius;
    float r = (v + omega * half) / g->wheel_radius;
    float m = fabsf(l) > fabsf(r) ? fabsf(l) : fabsf(r);
    if (max_wheel > 0.0f && m > max_wheel) {
        float s = max_wheel / m;
        l *= s;
        r *= s;
    }
    *left = l;
    *right = r;
}

void fb_wheels_to_twist(const fb_drive_geometry_t *g, float left, float right, float *v,
                        float *omega)
{
    *v = 0.5f * g->wheel_radius * (left + right);
    *omega = g->wheel_radius * (right - left) / g->track_width;
}

float fb_wrap_angle(float a)
{
    if (a > FB_PI_F || a <= -FB_PI_F) {
        /* no subtraction loop: a glitched encoder can hand us 1e9 rad, where adding
         * 2 pi no longer changes the float */
        a = atan2f(sinf(a), cosf(a));
        if (a != a)
            a = 0.0f;
        if (a <= -FB_PI_F)
            a = FB_PI_F;
    }
    return a;
}

void fb_odom_reset(fb_odometry_state_t *o, float x, float y, float theta)
{
    o->x = x;
    o->y = y;
    o->theta = fb_wrap_angle(theta);
    /* keep the encoder reference and velocity window: only the pose is reset */
}

void fb_odom_update(fb_odometry_state_t *o, const fb_drive_geometry_t *g,
                    uint32_t ticks_per_rev, int32_t left_ticks, int32_t right_ticks,
                    uint32_t now_us)
{
    float per_tick = 2.0f * FB_PI_F * g->wheel_radius / (float)ticks_per_rev;
    uint8_t oldest;
    if (!o->primed) {
        o->last_left = left_ticks;
        o->last_right = right_ticks;
        o->primed = 1;
        o->win_head = 0;
        o->win_count = 0;
    } else {
        /* wrap-safe difference of free-running counters */
        int32_t dl_ticks = (int32_t)((uint32_t)left_ticks - (uint32_t)o->last_left);
        int32_t dr_ticks = (int32_t)((uint32_t)right_ticks - (uint32_t)o->last_right);
        float dl = (float)dl_ticks * per_tick;
        float dr = (float)dr_ticks * per_tick;
        float ds = 0.5f * (dl + dr);
        float dth = (dr - dl) / g->track_width;
        float mid = o->theta + 0.5f * dth;
        o->x += ds * cosf(mid);
        o->y += ds * sinf(mid);
        o->theta = fb_wrap_angle(o->theta + dth);
        o->last_left = left_ticks;
        o->last_right = right_ticks;
    }
    /* velocity over the window, not one step: a few ticks per step would be too coarse */
    o->win_left[o->win_head] = left_ticks;
    o->win_right[o->win_head] = right_ticks;
    o->win_t_us[o->win_head] = now_us;
    o->win_head = (uint8_t)((o->win_head + 1u) % FB_ODOM_WINDOW);
    if (o->win_count < FB_ODOM_WINDOW)
        o->win_count++;
    oldest = (uint8_t)((o->win_head + FB_ODOM_WINDOW - o->win_count) % FB_ODOM_WINDOW);
    {
        uint8_t newest = (uint8_t)((o->win_head + FB_ODOM_WINDOW - 1u) % FB_ODOM_WINDOW);
        uint32_t dt_us = o->win_t_us[newest] - o->win_t_us[oldest];
        if (o->win_count < 2 || dt_us == 0) {
            o->v = 0.0f;
            o->omega = 0.0f;
        } else {
            float dt = (float)dt_us * 1e-6f;
            float dl = (float)(int32_t)((uint32_t)o->win_left[newest] -
                                        (uint32_t)o->win_left[oldest]) * per_tick;
            float dr = (float)(int32_t)((uint32_t)o->win_right[newest] -
                                        (uint32_t)o->win_right[oldest]) * per_tick;
            o->v = 0.5f * (dl + dr) / dt;
            o->omega = (dr - dl) / (g->track_width * dt);
        }
    }
}
