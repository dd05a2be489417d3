import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDeliveryReport, relayIdOfMessageId } from './ndr.js';

const fixture = (name: string) => readFileSync(new URL(`../test-fixtures/ndr/${name}.eml`, import.meta.url));

describe('parseDeliveryReport', () => {
  it("reads Postfix's RFC 3464 bounce with the original's headers attached", async () => {
    const r = await parseDeliveryReport(fixture('postfix-5.1.1'));
    expect(r).toMatchObject({
      format: 'rfc3464',
      relayMessageId: '0193a5b2-7c4e-7d10-8a2b-3c4d5e6f7a80',
      originalMessageId: '<0193a5b2-7c4e-7d10-8a2b-3c4d5e6f7a80@example.edu>',
      reportMessageId: '<20261204101503.4Q1abc2XyZz@mail.example.edu>',
    });
    expect(r!.recipients).toEqual([
      {
        recipient: 'nobody@students.example.org',
        outcome: 'bounced',
        status: '5.1.1',
        diagnostic: '550 5.1.1 <nobody@students.example.org>: Recipient address rejected: User unknown in virtual mailbox table',
      },
    ]);
  });

  it("reads Gmail's bounce: a multi-line reply on one line, the id from the attached original", async () => {
    const r = await parseDeliveryReport(fixture('gmail-5.1.1'));
    expect(r).toMatchObject({ format: 'rfc3464', relayMessageId: '0193a5b2-aaaa-7d10-8a2b-3c4d5e6f7a82' });
    expect(r!.recipients).toEqual([
      {
        recipient: 'nosuchuser@gmail.com',
        outcome: 'bounced',
        status: '5.1.1',
        diagnostic:
          "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b8a3c.12 - gsmtp",
      },
    ]);
  });

  it("reads Exchange Online's bounce: the relay id from X-Relay-Message-Id, Exchange's own Message-ID kept", async () => {
    const r = await parseDeliveryReport(fixture('exchange-online-5.1.10'));
    expect(r).toMatchObject({
      format: 'rfc3464',
      relayMessageId: '0193a5b2-cccc-7d10-8a2b-3c4d5e6f7a84',
      originalMessageId: '<BN8PR12MB3587A1B2C3D4E5F6A7B8C9D0E1F2@BN8PR12MB3587.namprd12.prod.outlook.com>',
    });
    expect(r!.recipients).toEqual([
      {
        recipient: 'gone@fabrikam.com',
        outcome: 'bounced',
        status: '5.1.10',
        diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient gone@fabrikam.com not found by SMTP address lookup',
      },
    ]);
  });

  it("reads Exchange's human-readable report when there is no machine part", async () => {
    const r = await parseDeliveryReport(fixture('exchange-online-text'));
    expect(r).toMatchObject({ format: 'exchange-text', relayMessageId: '0193a5b2-dddd-7d10-8a2b-3c4d5e6f7a85' });
    expect(r!.recipients).toEqual([
      {
        recipient: 'gone@fabrikam.com',
        outcome: 'bounced',
        status: '5.1.10',
        diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      },
      { recipient: 'full@fabrikam.com', outcome: 'bounced', status: '5.2.2', diagnostic: "552 5.2.2 STOREDRV.Deliver; the recipient's mailbox is full" },
    ]);
  });

  it("reads Gmail's human-readable report, the original found by In-Reply-To", async () => {
    const r = await parseDeliveryReport(fixture('gmail-text-5.1.1'));
    expect(r).toMatchObject({ format: 'gmail-text', relayMessageId: '0193a5b2-bbbb-7d10-8a2b-3c4d5e6f7a83' });
    expect(r!.recipients).toEqual([
      {
        recipient: 'former.student@gmail.com',
        outcome: 'bounced',
        status: '5.1.1',
        diagnostic:
          "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b8a3c.12 - gsmtp",
      },
    ]);
  });

  it('reads a delay notice (4.x) as delayed', async () => {
    const r = await parseDeliveryReport(fixture('postfix-delayed-4.4.1'));
    expect(r).toMatchObject({ relayMessageId: '0193a5b2-9999-7d10-8a2b-3c4d5e6f7a81' });
    expect(r!.recipients).toEqual([
      {
        recipient: 'dean@slow.example.net',
        outcome: 'delayed',
        status: '4.4.1',
        diagnostic: 'connect to mx.slow.example.net[198.51.100.7]:25: Connection timed out',
      },
    ]);
  });

  it('ignores a reply that quotes report fields and a read receipt', async () => {
    expect(await parseDeliveryReport(fixture('not-a-bounce'))).toBeUndefined();
    expect(await parseDeliveryReport(fixture('read-receipt'))).toBeUndefined();
  });

  it('refuses a message over the size bound before reading it', async () => {
    const raw = fixture('postfix-5.1.1');
    await expect(parseDeliveryReport(raw, raw.length - 1)).rejects.toThrow(
      `delivery report is ${raw.length} bytes, more than the ${raw.length - 1} read at most`,
    );
    await expect(parseDeliveryReport(raw, raw.length)).resolves.toBeDefined();
  });
});

describe('relayIdOfMessageId', () => {
  it("takes the relay's id from the Message-ID it wrote, nothing from another", () => {
    expect(relayIdOfMessageId('<0193A5B2-7C4E-7D10-8A2B-3C4D5E6F7A80@example.edu>')).toBe('0193a5b2-7c4e-7d10-8a2b-3c4d5e6f7a80');
    expect(relayIdOfMessageId('<CAB1234567@mail.example.org>')).toBeUndefined();
  });
});
