// The logging surface the SIP layer needs: a subset of pino's, so a pino logger fits as is.
export interface SipLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export const silentLogger: SipLogger = { debug() {}, info() {}, warn() {} };
