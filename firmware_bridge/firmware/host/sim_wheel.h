/* sim_wheel: a DC gear motor with a quadrature encoder, for the host emulator.
 *
 * Speed follows duty with a first-order lag (electrical + mechanical time constant);
 * with zero duty the wheel also loses speed to Coulomb friction, so it comes to a
 * real stop instead of decaying forever. The encoder counts floor(angle * tpr / 2 pi).
 */
#ifndef SIM_WHEEL_H
#define SIM_WHEEL_H

#include <stdint.h>

typedef struct {
    double speed;    /* rad/s */
    double angle;    /* rad */
    double k;        /* rad/s at full duty */
    double tau;      /* s */
    double friction; /* rad/s^2 of Coulomb friction, applied when the duty is zero */
    uint32_t ticks_per_rev;
} sim_wheel_t;

void sim_wheel_init(sim_wheel_t *w, double k, double tau, double friction, uint32_t tpr);
void sim_wheel_step(sim_wheel_t *w, double duty, double dt);
int32_t sim_wheel_ticks(const sim_wheel_t *w);

#endif
