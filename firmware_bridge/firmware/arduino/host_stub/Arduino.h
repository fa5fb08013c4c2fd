/* Just enough of the Arduino API to compile fleet_bridge.ino on the host
 * (make sketch-check): declarations only, nothing runs. */
#ifndef HOST_STUB_ARDUINO_H
#define HOST_STUB_ARDUINO_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define HIGH 1
#define LOW 0
#define INPUT 0
#define OUTPUT 1
#define INPUT_PULLUP 2
#define CHANGE 1
#define A0 14
#define A1 15

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
int digitalRead(uint8_t pin);
void analogWrite(uint8_t pin, int value);
int analogRead(uint8_t pin);
void attachInterrupt(uint8_t irq, void (*isr)(void), int mode);
uint8_t digitalPinToInterrupt(uint8_t pin);
unsigned long micros(void);
unsigned long millis(void);
void noInterrupts(void);
void interrupts(void);

struct HardwareSerial {
    void begin(unsigned long baud);
    int available();
    int read();
    size_t write(const uint8_t *data, size_t len);
};
extern HardwareSerial Serial;
#endif
