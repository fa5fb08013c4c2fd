#include "fb_pi.h"

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

void fb_pi_init(fb_pi_t *c, float kff, float kp, float ki)
{
    c->kff = kff;
    c->kp = kp;
    c->ki = ki;
    c->integ = 0.0f;
}

void fb_pi_reset(fb_pi_t *c) { c->integ = 0.0f; }

float fb_pi_update(fb_pi_t *c, float setpoint, float measured, float dt)
{
    float err = setpoint - measured;
    float u_ff = c->kff * setpoint;
    float u;
    c->integ = clampf(c->integ + c->ki * err * dt, -1.0f, 1.0f);
    u = u_ff + c->kp * err + c->integ;
    if (u > 1.0f || u < -1.0f) {
        /* anti-windup: do not integrate further into saturation */
        c->integ -= c->ki * err * dt;
        u = clampf(u, -1.0f, 1.0f);
    }
    return u;
}
