/* fb_pi: wheel speed controller (feed-forward + PI with anti-windup), duty in [-1, 1]. */
#ifndef FB_PI_H
#define FB_PI_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float kff;   /* duty per rad/s (1 / wheel speed at full duty) */
    float kp;    /* duty per rad/s of error */
    float ki;    /* duty per rad of accumulated error */
    float integ; /* integral term, in duty */
} fb_pi_t;

void fb_pi_init(fb_pi_t *c, float kff, float kp, float ki);
void fb_pi_reset(fb_pi_t *c);
/* One step of dt seconds; returns the duty in [-1, 1]. */
float fb_pi_update(fb_pi_t *c, float setpoint, float measured, float dt);

#ifdef __cplusplus
}
#endif
#endif
