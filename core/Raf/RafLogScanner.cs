using FeitianK8s.Core.Common;
using FeitianK8s.Core.Pangu;

namespace FeitianK8s.Core.Raf;

/// <summary>How a segment scan ended: <see cref="EndOffset"/> is just past the last valid record; <see cref="TrailingBytes"/> follow it unparsed (a torn record or garbage).</summary>
public readonly record struct ScanResult(long EndOffset, long TrailingBytes, int Records);

/// <summary>Reads a log segment record by record from an offset, verifying both CRCs of each; stops at the end or at the first invalid record. The buffer starts at the typical record size and grows for larger records.</summary>
public sealed class RafLogScanner(IPanguReader reader, int typicalRecordDataBytes)
{
    private byte[] _buffer = new byte[Math.Max(1 << 20, typicalRecordDataBytes + RafRecordHeader.Size)];
    private long _bufferStart;
    private int _bufferLength;

    /// <param name="onRecord">Called in log order with the header and the file offset of the record's data; returning false ends the scan before that record.</param>
    public async Task<ScanResult> ScanAsync(long startOffset, Func<RafRecordHeader, long, bool> onRecord, CancellationToken ct)
    {
        _bufferStart = startOffset;
        _bufferLength = 0;
        var position = startOffset;
        var records = 0;
        while (true)
        {
            if (!await EnsureAsync(position, RafRecordHeader.Size, ct)
                || !RafRecordHeader.TryRead(Slice(position, RafRecordHeader.Size), RafRecordHeader.MaxDataLength, out var header)
                || !await EnsureAsync(position, header.RecordLength, ct)
                || Crc32C.Compute(Slice(position + RafRecordHeader.Size, header.DataLength)) != header.DataCrc
                || !onRecord(header, position + RafRecordHeader.Size))
            {
                return new ScanResult(position, Math.Max(0, reader.Length - position), records);
            }
            records++;
            position += header.RecordLength;
        }
    }

    private ReadOnlySpan<byte> Slice(long offset, int length) => _buffer.AsSpan((int)(offset - _bufferStart), length);

    /// <summary>Makes [offset, offset+length) present in the buffer; false at end of file.</summary>
    private async Task<bool> EnsureAsync(long offset, int length, CancellationToken ct)
    {
        if (offset >= _bufferStart && offset + length <= _bufferStart + _bufferLength)
        {
            return true;
        }
        if (length > _buffer.Length)
        {
            Array.Resize(ref _buffer, length);
        }
        var keep = (int)Math.Max(0, _bufferStart + _bufferLength - offset);
        if (keep > 0)
        {
            Buffer.BlockCopy(_buffer, (int)(offset - _bufferStart), _buffer, 0, keep);
        }
        _bufferStart = offset;
        _bufferLength = keep;
        while (_bufferLength < length)
        {
            var read = await reader.ReadAsync(_bufferStart + _bufferLength, _buffer.AsMemory(_bufferLength), ct);
            if (read <= 0)
            {
                return false;
            }
            _bufferLength += read;
        }
        return true;
    }
}
