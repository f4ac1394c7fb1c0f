/* SPDX-License-Identifier: MIT */
/* test_s3_xml.c - unit tests of the S3 listener's XML writer
 * (src/master/s3_xml.h): escaping of every text, documents refused rather
 * than truncated past their cap, and the date formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "master/s3_xml.h"

#define DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

static void test_text_is_escaped(void **state)
{
	struct efs_s3_xml x;
	efs_s3_xml_init(&x);
	efs_s3_xml_open(&x, "ListBucketResult", EFS_S3_XMLNS);
	efs_s3_xml_text(&x, "Key", "a<b>&\"c'\x01\x7f\xc3\xa9");
	efs_s3_xml_text(&x, "Empty", NULL);
	efs_s3_xml_u64(&x, "Size", 18446744073709551615ull);
	efs_s3_xml_bool(&x, "IsTruncated", false);
	efs_s3_xml_close(&x, "ListBucketResult");
	assert_int_equal(x.err, 0);
	assert_string_equal(x.buf.data, DECL
			    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			    "<Key>a&lt;b&gt;&amp;&quot;c&apos;&#x1;&#x7F;\xc3\xa9</Key>"
			    "<Empty></Empty><Size>18446744073709551615</Size>"
			    "<IsTruncated>false</IsTruncated></ListBucketResult>");
	efs_s3_xml_release(&x);
}

static void test_a_document_past_its_cap_fails(void **state)
{
	struct efs_s3_xml x;
	static char big[1024 * 1024];
	memset(big, 'k', sizeof(big) - 1);
	efs_s3_xml_init(&x);
	for (int i = 0; i < 17 && !x.err; i++)
		efs_s3_xml_text(&x, "Key", big);
	assert_int_equal(x.err, -E2BIG);
	efs_s3_xml_release(&x);
}

static void test_times(void **state)
{
	struct efs_s3_xml x;
	char date[EFS_S3_HTTP_DATE_LEN];
	efs_s3_xml_init(&x);
	efs_s3_xml_time(&x, "LastModified", 1796307666123);
	assert_string_equal(x.buf.data,
			    DECL "<LastModified>2026-12-03T14:21:06.123Z</LastModified>");
	efs_s3_xml_release(&x);
	assert_string_equal(efs_s3_http_date(1796307666123, date), "Thu, 03 Dec 2026 14:21:06 GMT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_is_escaped),
	    cmocka_unit_test(test_a_document_past_its_cap_fails),
	    cmocka_unit_test(test_times),
	};
	return cmocka_run_group_tests_name("s3_xml", tests, NULL, NULL);
}
