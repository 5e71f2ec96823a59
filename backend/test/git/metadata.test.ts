import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { extractRepositoryMetadata, parsePepeunitTomlGeneral, parseReadmeSummary } from '../../src/git/metadata.js';
import { README_V1, TOML_V1 } from './helpers.js';

describe('parseReadmeSummary', () => {
  const cases: { name: string; markdown: string; heading: string | null; paragraph: string | null }[] = [
    {
      name: 'skips HTML and badges, strips inline markup',
      markdown: README_V1,
      heading: 'Fan Regulator',
      paragraph: 'Regulates fan speed depending on temperature. Publishes current_temp/pepeunit.',
    },
    { name: 'setext heading', markdown: 'My Unit\n=======\n\nDoes things.\n', heading: 'My Unit', paragraph: 'Does things.' },
    { name: 'html heading', markdown: '<h1 align="center">Sensor</h1>\n\nReads *values*.\n', heading: 'Sensor', paragraph: 'Reads values.' },
    {
      name: 'front matter, code fences and lists are not paragraphs',
      markdown: '---\ntitle: x\n---\n# Title #\n\n```\ncode line\n```\n- item\n- item\n\n> quote\n\nReal text\ncontinues here.\n\nSecond paragraph.',
      heading: 'Title',
      paragraph: 'Real text continues here.',
    },
    { name: 'no heading', markdown: 'Just a paragraph with `code` and snake_case_name.\n', heading: null, paragraph: 'Just a paragraph with code and snake_case_name.' },
    { name: 'empty', markdown: '', heading: null, paragraph: null },
    { name: 'CRLF and BOM', markdown: '\uFEFF# Win\r\n\r\nLine one\r\nline two\r\n', heading: 'Win', paragraph: 'Line one line two' },
  ];
  for (const { name, markdown, heading, paragraph } of cases) {
    test(name, () => assert.deepEqual(parseReadmeSummary(markdown), { heading, paragraph }));
  }

  test('long paragraphs are truncated', () => {
    const { paragraph } = parseReadmeSummary(`# T\n\n${'word '.repeat(500)}`);
    assert.ok(paragraph !== null && paragraph.length <= 1000 && paragraph.endsWith('…'));
  });
});

describe('parsePepeunitTomlGeneral', () => {
  test('reads the documented [general] fields', () => {
    const { general, warnings } = parsePepeunitTomlGeneral(TOML_V1);
    assert.deepEqual(warnings, []);
    assert.deepEqual(general, {
      name: 'Fan Regulator ds18b20',
      description: 'Regulates fan speed depending on temperature.',
      language: 'Micropython',
      version: '1.0.0',
      license: 'AGPL v3 License',
      hardware: [
        { name: 'esp32', link: null },
        { name: 'ds18b20', link: null },
      ],
      firmware: [{ name: 'ESP32_GENERIC.bin', link: 'https://example.org/fw.bin' }],
      stack: [{ name: 'pepeunit_micropython_client', link: null }],
      authors: [{ name: 'Ivan', email: 'ivan@example.org' }],
    });
  });

  test('malformed TOML elsewhere: [general] is still read, with a warning', () => {
    const text = `${TOML_V1}\n[work_algorithm]\nsteps = [ "unterminated\n`;
    const { general, warnings } = parsePepeunitTomlGeneral(text);
    assert.equal(general.name, 'Fan Regulator ds18b20');
    assert.equal(general.hardware.length, 2);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^pepeunit\.toml is not valid TOML: /);
  });

  test('malformed field inside [general]: the other fields survive', () => {
    const text = '[general]\nname = "Good name"\ndescription = "broken\nlanguage = "C"\nhardware = ["a",\n  "b"]\n';
    const { general, warnings } = parsePepeunitTomlGeneral(text);
    assert.equal(general.name, 'Good name');
    assert.equal(general.description, null);
    assert.equal(general.language, 'C');
    assert.deepEqual(general.hardware.map((h) => h.name), ['a', 'b']);
    assert.ok(warnings.some((w) => w.startsWith('pepeunit.toml: general.description ignored')), JSON.stringify(warnings));
  });

  test('limits, wrong types and odd values', () => {
    const text = [
      '[general]',
      `name = "${'n'.repeat(60)}"`,
      'version = 2',
      'language = ["not", "a", "string"]',
      `stack = [${Array.from({ length: 35 }, (_, i) => `"s${i}"`).join(', ')}]`,
      'hardware = "esp32"',
      'authors = ["Jane Doe <jane@example.org>", 5]',
    ].join('\n');
    const { general, warnings } = parsePepeunitTomlGeneral(text);
    assert.equal(general.name, 'n'.repeat(50));
    assert.equal(general.version, '2');
    assert.equal(general.language, null);
    assert.equal(general.stack.length, 30);
    assert.deepEqual(general.hardware, []);
    assert.deepEqual(general.authors, [{ name: 'Jane Doe', email: 'jane@example.org' }]);
    assert.equal(warnings.length, 5, JSON.stringify(warnings));
  });

  test('no [general] table and garbage input never throw', () => {
    assert.deepEqual(parsePepeunitTomlGeneral('[images]\na = "b"\n').warnings, ['pepeunit.toml has no [general] table']);
    const garbage = parsePepeunitTomlGeneral('\u0000\u0001 ]]] = = =');
    assert.equal(garbage.general.name, null);
    assert.ok(garbage.warnings.length >= 1);
  });
});

describe('extractRepositoryMetadata', () => {
  test('prefers pepeunit.toml, falls back to the README', () => {
    const both = extractRepositoryMetadata(README_V1, TOML_V1);
    assert.equal(both.title, 'Fan Regulator ds18b20');
    assert.equal(both.description, 'Regulates fan speed depending on temperature.');
    assert.equal(both.readmeHeading, 'Fan Regulator');

    const readmeOnly = extractRepositoryMetadata(README_V1, null);
    assert.equal(readmeOnly.title, 'Fan Regulator');
    assert.equal(readmeOnly.description, 'Regulates fan speed depending on temperature. Publishes current_temp/pepeunit.');
    assert.deepEqual(readmeOnly.toml.hardware, []);

    const nothing = extractRepositoryMetadata(null, null);
    assert.equal(nothing.title, null);
    assert.equal(nothing.description, null);
    assert.deepEqual(nothing.warnings, []);
  });
});
