import type { Server } from '@grpc/grpc-js';
import type { Http2Server, ServerHttp2Session } from 'node:http2';

/**
 * Raises the HTTP/2 receive windows (per stream and per connection) of a grpc-js server's sessions.
 *
 * grpc-js servers keep Node's default of 64 KiB and have no option for it yet (grpc-node PR #3058 would
 * add `grpc-node.flow_control_window` on the server). With that window an Ingest batch of a few hundred
 * kilobytes — and every concurrent call shares one connection — crosses in 64 KiB steps, each waiting
 * for a WINDOW_UPDATE this process sends only once its event loop has read the data: under load the
 * calls took seconds to arrive while handling them took a few hundred milliseconds.
 *
 * Relies on grpc-js internals (`http2Servers`, `sessions`); false if they are not there.
 */
export function raiseReceiveWindow(server: Server, bytes: number): boolean {
  const internals = server as unknown as {
    http2Servers?: Map<Http2Server, unknown>;
    sessions?: Map<ServerHttp2Session, unknown>;
  };
  if (!(internals.http2Servers instanceof Map) || !(internals.sessions instanceof Map)) return false;
  const raise = (session: ServerHttp2Session) => {
    if (session.destroyed) return;
    session.setLocalWindowSize(bytes);
    session.settings({ initialWindowSize: bytes });
  };
  for (const session of internals.sessions.keys()) raise(session);
  for (const http2Server of internals.http2Servers.keys()) http2Server.on('session', raise);
  return true;
}
