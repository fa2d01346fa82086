import { isLoopback } from './plugins/auth.js';

/**
 * Who a rate limit counts a request against. Every address of 127.0.0.0/8 and ::1 is this host,
 * and every hosted site's PHP shares it, so they are one client (otherwise a caller past its limit
 * just moves to 127.0.0.2). An IPv4-mapped IPv6 address is the IPv4 client it maps.
 */
export function rateLimitClient(ip: string): string {
  if (isLoopback(ip)) return 'loopback';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice('::ffff:'.length) : ip;
}
