import { request } from 'undici';

export interface ServerSentEvent {
  id: string | null;
  event: string;
  data: string;
}

/** Reads a text/event-stream over real HTTP and parses it as EventSource does (id, event, data; comments skipped). */
export async function openEventStream(url: string, headers: Record<string, string>) {
  const response = await request(url, { headers });
  const events: ServerSentEvent[] = [];
  const comments: string[] = [];
  let buffer = '';
  let ended = false;
  const done = (async () => {
    if (response.statusCode !== 200) return;
    for await (const chunk of response.body) {
      buffer += chunk.toString();
      let split;
      while ((split = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, split);
        buffer = buffer.slice(split + 2);
        const event: ServerSentEvent = { id: null, event: 'message', data: '' };
        let isEvent = false;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else if (line.startsWith('id: ')) event.id = line.slice(4);
          else if (line.startsWith('event: ')) event.event = line.slice(7);
          else if (line.startsWith('data: ')) {
            event.data += line.slice(6);
            isEvent = true;
          }
        }
        if (isEvent) events.push(event);
      }
    }
  })()
    .catch(() => undefined)
    .finally(() => (ended = true));
  return {
    statusCode: response.statusCode,
    headers: response.headers,
    events,
    comments,
    done,
    get ended() {
      return ended;
    },
    json: <T = Record<string, unknown>>(name: string): T[] => events.filter((e) => e.event === name).map((e) => JSON.parse(e.data) as T),
    close: () => response.body.destroy(),
    body: response.body,
  };
}
