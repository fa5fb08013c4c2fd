// fleet_bridge: the board layer of the fleet_coord reference firmware.
//
// Arduino Uno / Nano (ATmega328P) or ESP32 DevKit, a TB6612FNG dual motor driver, two
// DC gear motors with quadrature encoders, a normally-closed e-stop button, a battery
// voltage divider. Wiring: firmware_bridge/firmware/README.md. The portable core
// (fb_*.c/h) does the protocol, the watchdog, the e-stop latch and the odometry; this
// file only reads pins and drives PWM. Build: `make -C firmware_bridge/firmware arduino`,
// then open build/arduino/fleet_bridge/ in the Arduino IDE (or arduino-cli compile).

#include "fb_core.h"
#include "fb_pi.h"

#if defined(ARDUINO_ARCH_ESP32)
static const uint8_t ENC_L_A = 34, ENC_L_B = 35, ENC_R_A = 32, ENC_R_B = 33;
static const uint8_t PWM_L = 25, IN1_L = 26, IN2_L = 27;
static const uint8_t PWM_R = 14, IN1_R = 12, IN2_R = 13;
static const uint8_t STBY = 15;
static const uint8_t ESTOP_PIN = 4;
static const uint8_t VBAT_PIN = 36;
static const float ADC_MV_PER_COUNT = 3300.0f / 4095.0f;  // 11 dB attenuation, roughly
static const uint32_t BAUD = 921600;                     // USB-UART bridge
#define ISR_ATTR IRAM_ATTR
#else
static const uint8_t ENC_L_A = 2, ENC_L_B = 4, ENC_R_A = 3, ENC_R_B = 5;  // INT0, INT1
static const uint8_t PWM_L = 9, IN1_L = 7, IN2_L = 8;
static const uint8_t PWM_R = 10, IN1_R = 11, IN2_R = 12;
static const uint8_t STBY = 6;
static const uint8_t ESTOP_PIN = A1;
static const uint8_t VBAT_PIN = A0;
static const float ADC_MV_PER_COUNT = 5000.0f / 1023.0f;
static const uint32_t BAUD = 115200;
#define ISR_ATTR
#endif

// Robot constants: adjust to your motors (JGA25-370, 11 PPR, 1:30, counted on both edges
// of channel A = 660 ticks per wheel revolution; 200 rpm at 12 V = 20.9 rad/s).
static const uint32_t TICKS_PER_REV = 660;
static const float MAX_WHEEL_SPEED = 20.9f;  // rad/s at full duty
static const float VBAT_DIVIDER = (10.0f + 3.3f) / 3.3f;  // 10k over 3.3k
static const uint16_t VBAT_EMPTY_MV = 10500, VBAT_FULL_MV = 12600;  // 3S Li-ion
static const uint32_t DEVICE_ID = 1;  // make it unique per robot

static volatile int32_t ticks_l, ticks_r;
static fb_core_t core;
static fb_pi_t pi_l, pi_r;

// x2 decoding: on every edge of A, B tells the direction
static void ISR_ATTR isr_left() { ticks_l += digitalRead(ENC_L_A) == digitalRead(ENC_L_B) ? -1 : 1; }
// the right motor is mounted mirrored: forward is the other direction
static void ISR_ATTR isr_right() { ticks_r += digitalRead(ENC_R_A) == digitalRead(ENC_R_B) ? 1 : -1; }

static void serial_write(void *ctx, const uint8_t *data, uint16_t len)
{
    (void)ctx;
    Serial.write(data, len);
}

static void drive(uint8_t pwm, uint8_t in1, uint8_t in2, float duty)
{
    if (duty > 0.0f) {
        digitalWrite(in1, HIGH);
        digitalWrite(in2, LOW);
    } else if (duty < 0.0f) {
        digitalWrite(in1, LOW);
        digitalWrite(in2, HIGH);
    } else {  // TB6612: IN1 = IN2 = HIGH is short brake
        digitalWrite(in1, HIGH);
        digitalWrite(in2, HIGH);
    }
    analogWrite(pwm, (int)(fabsf(duty) * 255.0f + 0.5f));
}

static void motors_off()
{
    drive(PWM_L, IN1_L, IN2_L, 0.0f);
    drive(PWM_R, IN1_R, IN2_R, 0.0f);
    digitalWrite(STBY, LOW);  // driver outputs off: the hardware half of "motors zeroed"
    fb_pi_reset(&pi_l);
    fb_pi_reset(&pi_r);
}

void setup()
{
    const uint8_t outputs[] = {PWM_L, IN1_L, IN2_L, PWM_R, IN1_R, IN2_R, STBY};
    for (uint8_t i = 0; i < sizeof outputs; i++)
        pinMode(outputs[i], OUTPUT);
    motors_off();
    pinMode(ENC_L_A, INPUT_PULLUP);
    pinMode(ENC_L_B, INPUT_PULLUP);
    pinMode(ENC_R_A, INPUT_PULLUP);
    pinMode(ENC_R_B, INPUT_PULLUP);
    pinMode(ESTOP_PIN, INPUT_PULLUP);  // NC button to GND: open circuit (HIGH) = stop
    attachInterrupt(digitalPinToInterrupt(ENC_L_A), isr_left, CHANGE);
    attachInterrupt(digitalPinToInterrupt(ENC_R_A), isr_right, CHANGE);
    Serial.begin(BAUD);

    fb_config_t cfg;
    fb_config_defaults(&cfg);
    cfg.ticks_per_rev = TICKS_PER_REV;
    cfg.max_wheel_speed = MAX_WHEEL_SPEED;
    cfg.control_period_us = 10000;  // 100 Hz: enough ticks per step at 660 ticks/rev
    fb_core_init(&core, &cfg, DEVICE_ID, serial_write, NULL, micros());
    fb_pi_init(&pi_l, 1.0f / MAX_WHEEL_SPEED, 0.02f, 0.3f);
    fb_pi_init(&pi_r, 1.0f / MAX_WHEEL_SPEED, 0.02f, 0.3f);
}

void loop()
{
    static uint32_t last_battery_us;
    uint8_t buf[32];
    uint16_t n = 0;
    while (n < sizeof buf && Serial.available() > 0)
        buf[n++] = (uint8_t)Serial.read();
    uint32_t now = micros();
    if (n)
        fb_core_rx(&core, buf, n, now);

    fb_core_set_estop_input(&core, digitalRead(ESTOP_PIN) == HIGH);
    if (now - last_battery_us >= 100000u) {
        last_battery_us = now;
        float mv = (float)analogRead(VBAT_PIN) * ADC_MV_PER_COUNT * VBAT_DIVIDER;
        float pct = 100.0f * (mv - VBAT_EMPTY_MV) / (float)(VBAT_FULL_MV - VBAT_EMPTY_MV);
        pct = pct < 0.0f ? 0.0f : (pct > 100.0f ? 100.0f : pct);
        fb_core_set_battery(&core, (uint16_t)mv, (uint8_t)(pct + 0.5f));
        fb_core_set_faults(&core, pct < 10.0f ? FB_FAULT_LOW_BATTERY : 0);
    }

    noInterrupts();
    int32_t l = ticks_l, r = ticks_r;
    interrupts();
    if (fb_core_update(&core, now, l, r) && core.motors_enabled) {
        float dt = (float)core.cfg.control_period_us * 1e-6f;
        digitalWrite(STBY, HIGH);
        drive(PWM_L, IN1_L, IN2_L, fb_pi_update(&pi_l, core.wheel_sp_left, core.wheel_meas_left, dt));
        drive(PWM_R, IN1_R, IN2_R, fb_pi_update(&pi_r, core.wheel_sp_right, core.wheel_meas_right, dt));
    }
    if (!core.motors_enabled)
        motors_off();  // every loop, not only on control steps: the watchdog acts at once
}
