// Structured JSON logs (pino) to stdout.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { svc: 'nkmedia' }, timestamp: pino.stdTimeFunctions.isoTime });
}
