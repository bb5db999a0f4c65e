//go:build amd64 && !purego

#include "textflag.h"

// AES-256-CBC with AES-NI; see cbc_amd64.go. Round keys are loaded with
// MOVOU because Go does not align them to 16 bytes.

// DEC8 applies round key at offset off of AX to the eight blocks X0-X7.
#define DEC8(op, off) \
	MOVOU off(AX), X8; \
	op X8, X0; \
	op X8, X1; \
	op X8, X2; \
	op X8, X3; \
	op X8, X4; \
	op X8, X5; \
	op X8, X6; \
	op X8, X7

// DEC1 applies round key at offset off of AX to the block X0.
#define DEC1(op, off) MOVOU off(AX), X8; op X8, X0

// func cbcEncryptAsm(xk *roundKeys, iv *[BlockSize]byte, dst, src *byte, n int)
TEXT ·cbcEncryptAsm(SB), NOSPLIT, $0-40
	MOVQ xk+0(FP), AX
	MOVQ iv+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ n+32(FP), CX
	MOVOU 0(BX), X0
	// Round keys 0-13 stay in X2-X15; key 14 is loaded per block.
	MOVOU 0(AX), X2
	MOVOU 16(AX), X3
	MOVOU 32(AX), X4
	MOVOU 48(AX), X5
	MOVOU 64(AX), X6
	MOVOU 80(AX), X7
	MOVOU 96(AX), X8
	MOVOU 112(AX), X9
	MOVOU 128(AX), X10
	MOVOU 144(AX), X11
	MOVOU 160(AX), X12
	MOVOU 176(AX), X13
	MOVOU 192(AX), X14
	MOVOU 208(AX), X15
enc_loop:
	CMPQ CX, $16
	JB enc_done
	MOVOU 0(SI), X1
	PXOR X1, X0
	PXOR X2, X0
	AESENC X3, X0
	AESENC X4, X0
	AESENC X5, X0
	AESENC X6, X0
	AESENC X7, X0
	AESENC X8, X0
	AESENC X9, X0
	AESENC X10, X0
	AESENC X11, X0
	AESENC X12, X0
	AESENC X13, X0
	AESENC X14, X0
	AESENC X15, X0
	MOVOU 224(AX), X1
	AESENCLAST X1, X0
	MOVOU X0, 0(DI)
	ADDQ $16, SI
	ADDQ $16, DI
	SUBQ $16, CX
	JMP enc_loop
enc_done:
	MOVOU X0, 0(BX)
	RET

// func cbcDecryptAsm(xk *roundKeys, iv *[BlockSize]byte, dst, src *byte, n int)
TEXT ·cbcDecryptAsm(SB), NOSPLIT, $0-40
	MOVQ xk+0(FP), AX
	MOVQ iv+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ n+32(FP), CX
	MOVOU 0(BX), X10 // the previous ciphertext block
dec8:
	CMPQ CX, $128
	JB dec1
	// Eight blocks at a time: all are loaded before any is stored, so dst may be src.
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	DEC8(PXOR, 0)
	DEC8(AESDEC, 16)
	DEC8(AESDEC, 32)
	DEC8(AESDEC, 48)
	DEC8(AESDEC, 64)
	DEC8(AESDEC, 80)
	DEC8(AESDEC, 96)
	DEC8(AESDEC, 112)
	DEC8(AESDEC, 128)
	DEC8(AESDEC, 144)
	DEC8(AESDEC, 160)
	DEC8(AESDEC, 176)
	DEC8(AESDEC, 192)
	DEC8(AESDEC, 208)
	DEC8(AESDECLAST, 224)
	PXOR X10, X0
	MOVOU 0(SI), X9
	PXOR X9, X1
	MOVOU 16(SI), X9
	PXOR X9, X2
	MOVOU 32(SI), X9
	PXOR X9, X3
	MOVOU 48(SI), X9
	PXOR X9, X4
	MOVOU 64(SI), X9
	PXOR X9, X5
	MOVOU 80(SI), X9
	PXOR X9, X6
	MOVOU 96(SI), X9
	PXOR X9, X7
	MOVOU 112(SI), X10
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, CX
	JMP dec8
dec1:
	CMPQ CX, $16
	JB dec_done
	MOVOU 0(SI), X0
	MOVOU X0, X11
	DEC1(PXOR, 0)
	DEC1(AESDEC, 16)
	DEC1(AESDEC, 32)
	DEC1(AESDEC, 48)
	DEC1(AESDEC, 64)
	DEC1(AESDEC, 80)
	DEC1(AESDEC, 96)
	DEC1(AESDEC, 112)
	DEC1(AESDEC, 128)
	DEC1(AESDEC, 144)
	DEC1(AESDEC, 160)
	DEC1(AESDEC, 176)
	DEC1(AESDEC, 192)
	DEC1(AESDEC, 208)
	DEC1(AESDECLAST, 224)
	PXOR X10, X0
	MOVOU X11, X10
	MOVOU X0, 0(DI)
	ADDQ $16, SI
	ADDQ $16, DI
	SUBQ $16, CX
	JMP dec1
dec_done:
	MOVOU X10, 0(BX)
	RET

// func aesIMC(rk *[BlockSize]byte)
TEXT ·aesIMC(SB), NOSPLIT, $0-8
	MOVQ rk+0(FP), AX
	MOVOU 0(AX), X0
	AESIMC X0, X0
	MOVOU X0, 0(AX)
	RET
