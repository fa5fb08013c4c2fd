#include "sim_wheel.h"

#include <math.h>

#define TWO_PI 6.283185307179586

void sim_wheel_init(sim_wheel_t *w, double k, double tau, double friction, uint32_t tpr)
{
    w->speed = 0.0;
    w->angle = 0.0;
    w->k = k;
    w->tau = tau;
    w->friction = friction;
    w->ticks_per_rev = tpr;
}

void sim_wheel_step(sim_wheel_t *w, double duty, double dt)
{
    double a = dt / w->tau;
    double prev = w->speed;
    if (a > 1.0)
        a = 1.0;
    w->speed += (w->k * duty - w->speed) * a;
    if (duty == 0.0) {
        double f = w->friction * dt;
        w->speed = fabs(w->speed) <= f ? 0.0 : w->speed - copysign(f, w->speed);
    }
    /* trapezoidal position update */
    w->angle += 0.5 * (prev + w->speed) * dt;
}

int32_t sim_wheel_ticks(const sim_wheel_t *w)
{
    double t = floor(w->angle * (double)w->ticks_per_rev / TWO_PI);
    /* free-running 32-bit counter, like the hardware */
    return (int32_t)(uint32_t)(int64_t)fmod(t, 4294967296.0);
}
