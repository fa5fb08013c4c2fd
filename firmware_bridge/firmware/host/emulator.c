/* fb_emulator: the firmware core driving a simulated differential-drive robot, talking to
 * the host over a pseudo-terminal, as a USB-serial board would.
 *
 * Prints the pty slave path as the first line of stdout (and points --link at it), then
 * runs until SIGTERM/SIGINT. SIGUSR1 toggles the simulated hardware e-stop input.
 * Run with --help for the options.
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fb_core.h"
#include "fb_pi.h"
#include "sim_wheel.h"

typedef struct {
    const char *link;
    double time_scale;
    double battery_start_pct, battery_drain_pct_per_min;
    double drop_rate, corrupt_rate;
    unsigned boot_garbage;
    uint64_t seed;
    uint32_t device_id;
    uint32_t ticks_per_rev;
    double motor_tau, friction;
    int verbose;
} options_t;

static volatile sig_atomic_t g_stop, g_toggle_estop;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_toggle_estop = 1;
    else
        g_stop = 1;
}

/* xorshift64*: a seeded, repeatable fault injector */
static uint64_t g_rng = 88172645463325252ull;
static double rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

typedef struct {
    int fd;
    const options_t *opt;
    unsigned long frames, dropped, corrupted, overruns;
} port_t;

static void write_all(port_t *p, const uint8_t *data, size_t len)
{
    while (len) {
        ssize_t n = write(p->fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN: nobody reads the slave and its buffer is full; a real UART would
             * drop the bytes too, and the next leading 0x00 resyncs the host */
            p->overruns++;
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void port_write(void *ctx, const uint8_t *data, uint16_t len)
{
    port_t *p = (port_t *)ctx;
    uint8_t buf[FB_MAX_WIRE];
    p->frames++;
    if (p->opt->drop_rate > 0 && rnd() < p->opt->drop_rate) {
        p->dropped++;
        return;
    }
    if (len > sizeof buf)
        len = sizeof buf;
    memcpy(buf, data, len);
    if (p->opt->corrupt_rate > 0 && rnd() < p->opt->corrupt_rate) {
        buf[(size_t)(rnd() * len) % len] ^= (uint8_t)(1u << ((unsigned)(rnd() * 8) & 7u));
        p->corrupted++;
    }
    write_all(p, buf, len);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fb_emulator [options]\n"
            "  --link PATH            symlink PATH to the pty slave (replaced atomically)\n"
            "  --time-scale X         device time runs X times wall time (default 1)\n"
            "  --battery PCT          battery charge at start (default 100)\n"
            "  --battery-drain P      battery drain in %%/min of device time (default 0)\n"
            "  --drop-rate P          drop each outgoing frame with probability P\n"
            "  --corrupt-rate P       flip one bit of each outgoing frame with probability P\n"
            "  --boot-garbage N       write N random bytes first (bootloader noise)\n"
            "  --seed N               seed of the fault injector (default 1)\n"
            "  --device-id N          reported in HELLO_ACK (default 1)\n"
            "  --ticks-per-rev N      encoder resolution (default 4096)\n"
            "  --motor-tau S          motor time constant (default 0.03)\n"
            "  --friction A           Coulomb friction in rad/s^2 when unpowered (default 40)\n"
            "  -v                     log to stderr\n"
            "First stdout line: the pty slave path. SIGUSR1 toggles the e-stop input.\n");
}

static int parse_args(int argc, char **argv, options_t *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->time_scale = 1.0;
    o->battery_start_pct = 100.0;
    o->seed = 1;
    o->device_id = 1;
    o->ticks_per_rev = 4096;
    o->motor_tau = 0.03;
    o->friction = 40.0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-v")) {
            o->verbose = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "fb_emulator: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--link")) {
            o->link = v;
            continue;
        }
        errno = 0;
        if (!strcmp(a, "--time-scale"))
            o->time_scale = strtod(v, &end);
        else if (!strcmp(a, "--battery"))
            o->battery_start_pct = strtod(v, &end);
        else if (!strcmp(a, "--battery-drain"))
            o->battery_drain_pct_per_min = strtod(v, &end);
        else if (!strcmp(a, "--drop-rate"))
            o->drop_rate = strtod(v, &end);
        else if (!strcmp(a, "--corrupt-rate"))
            o->corrupt_rate = strtod(v, &end);
        else if (!strcmp(a, "--boot-garbage"))
            o->boot_garbage = (unsigned)strtoul(v, &end, 0);
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, &end, 0);
        else if (!strcmp(a, "--device-id"))
            o->device_id = (uint32_t)strtoul(v, &end, 0);
        else if (!strcmp(a, "--ticks-per-rev"))
            o->ticks_per_rev = (uint32_t)strtoul(v, &end, 0);
        else if (!strcmp(a, "--motor-tau"))
            o->motor_tau = strtod(v, &end);
        else if (!strcmp(a, "--friction"))
            o->friction = strtod(v, &end);
        else {
            fprintf(stderr, "fb_emulator: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (errno || !end || *end) {
            fprintf(stderr, "fb_emulator: %s: cannot parse %s as a number\n", a, v);
            return -1;
        }
    }
    if (!(o->time_scale > 0) || o->ticks_per_rev == 0 || !(o->motor_tau > 0)) {
        fprintf(stderr, "fb_emulator: --time-scale and --motor-tau must be > 0, "
                        "--ticks-per-rev >= 1\n");
        return -1;
    }
    return 0;
}

static int open_pty(int *master, int *slave, char *name, size_t cap)
{
    struct termios t;
    const char *n;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m) || !(n = ptsname(m))) {
        perror("fb_emulator: pty");
        return -1;
    }
    snprintf(name, cap, "%s", n);
    /* Keep the slave open ourselves: the master then never sees a hang-up while the host
     * closes and reopens the port, and the line stays in raw mode (no echo, no CR/LF
     * translation) even before the host configures it. */
    *slave = open(name, O_RDWR | O_NOCTTY);
    if (*slave < 0 || tcgetattr(*slave, &t)) {
        perror("fb_emulator: pty slave");
        return -1;
    }
    cfmakeraw(&t);
    tcsetattr(*slave, TCSANOW, &t);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    *master = m;
    return 0;
}

static int make_link(const char *link, const char *target)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", link, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, link)) {
        fprintf(stderr, "fb_emulator: cannot link %s -> %s: %s\n", link, target,
                strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options_t opt;
    fb_config_t cfg;
    fb_core_t core;
    fb_pi_t pi_l, pi_r;
    sim_wheel_t wl, wr;
    port_t port;
    int master, slave;
    char name[256];
    uint64_t t0;
    double sim_t = 0.0, duty_l = 0.0, duty_r = 0.0;
    uint8_t estop_input = 0;
    struct sigaction sa;

    if (parse_args(argc, argv, &opt))
        return 2;
    g_rng ^= opt.seed * 0x9E3779B97F4A7C15ull;
    if (open_pty(&master, &slave, name, sizeof name))
        return 1;
    if (opt.link && make_link(opt.link, name))
        return 1;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fb_config_defaults(&cfg);
    cfg.ticks_per_rev = opt.ticks_per_rev;
    sim_wheel_init(&wl, cfg.max_wheel_speed, opt.motor_tau, opt.friction, cfg.ticks_per_rev);
    sim_wheel_init(&wr, cfg.max_wheel_speed, opt.motor_tau, opt.friction, cfg.ticks_per_rev);
    fb_pi_init(&pi_l, 1.0f / cfg.max_wheel_speed, 0.02f, 0.3f);
    fb_pi_init(&pi_r, 1.0f / cfg.max_wheel_speed, 0.02f, 0.3f);
    memset(&port, 0, sizeof port);
    port.fd = master;
    port.opt = &opt;

    printf("%s\n", name);
    fflush(stdout);

    if (opt.boot_garbage) {
        unsigned i;
        uint8_t junk[256];
        for (i = 0; i < opt.boot_garbage; i++) {
            junk[i % sizeof junk] = (uint8_t)(rnd() * 256);
            if (i % sizeof junk == sizeof junk - 1 || i + 1 == opt.boot_garbage)
                write_all(&port, junk, i % sizeof junk + 1);
        }
    }

    t0 = mono_ns();
    fb_core_init(&core, &cfg, opt.device_id, port_write, &port, 0);

    while (!g_stop) {
        struct pollfd pfd;
        uint8_t buf[512];
        double now_s, dt;
        uint32_t now_us;
        pfd.fd = master;
        pfd.events = POLLIN;
        pfd.revents = 0;
        poll(&pfd, 1, 1);

        now_s = (double)(mono_ns() - t0) * 1e-9 * opt.time_scale;
        /* advance the plant in steps of at most 0.5 ms of device time */
        dt = now_s - sim_t;
        while (dt > 0) {
            double h = dt > 0.0005 ? 0.0005 : dt;
            sim_wheel_step(&wl, duty_l, h);
            sim_wheel_step(&wr, duty_r, h);
            dt -= h;
        }
        sim_t = now_s;
        now_us = (uint32_t)(uint64_t)(now_s * 1e6);

        if (g_toggle_estop) {
            g_toggle_estop = 0;
            estop_input = !estop_input;
            fb_core_set_estop_input(&core, estop_input);
            if (opt.verbose)
                fprintf(stderr, "fb_emulator: e-stop input %s\n", estop_input ? "on" : "off");
        }
        {
            double pct = opt.battery_start_pct - opt.battery_drain_pct_per_min * now_s / 60.0;
            if (pct < 0)
                pct = 0;
            fb_core_set_battery(&core, (uint16_t)(10500.0 + 21.0 * pct), (uint8_t)(pct + 0.5));
            fb_core_set_faults(&core, pct < 10.0 ? FB_FAULT_LOW_BATTERY : 0);
        }

        if (pfd.revents & POLLIN) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0)
                fb_core_rx(&core, buf, (uint16_t)n, now_us);
        }
        if (fb_core_update(&core, now_us, sim_wheel_ticks(&wl), sim_wheel_ticks(&wr))) {
            float h = (float)cfg.control_period_us * 1e-6f;
            if (core.motors_enabled) {
                duty_l = fb_pi_update(&pi_l, core.wheel_sp_left, core.wheel_meas_left, h);
                duty_r = fb_pi_update(&pi_r, core.wheel_sp_right, core.wheel_meas_right, h);
            }
        }
        if (!core.motors_enabled) {
            /* zeroed at once, not at the next control step */
            duty_l = duty_r = 0.0;
            fb_pi_reset(&pi_l);
            fb_pi_reset(&pi_r);
        }
    }
    if (opt.verbose)
        fprintf(stderr, "fb_emulator: %lu frames sent, %lu dropped, %lu corrupted, "
                        "%lu overruns\n", port.frames, port.dropped, port.corrupted,
                port.overruns);
    if (opt.link) {
        /* a restarted emulator may already own the link: remove only our own */
        char target[256];
        ssize_t n = readlink(opt.link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            if (!strcmp(target, name))
                unlink(opt.link);
        }
    }
    close(slave);
    close(master);
    return 0;
}
